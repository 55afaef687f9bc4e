"""The studies' figures, drawn from tables and arrays they are given (matplotlib, Agg backend).

The bottom of pkdot_jax/study with stats.py and tables.py: no function here reads a run directory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pkdot_jax.study import stats as stats_lib


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def bar_plot(path: str, table: list[dict[str, Any]], label_key: str, metric: str) -> None:
  """Bars of the mean test `metric` per entry of `table` with its std as error bar."""
  plt = _pyplot()
  labels = [str(e[label_key]) for e in table]
  fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(labels) + 2), 3.5))
  ax.bar(range(len(labels)), [e["mean"] for e in table], yerr=[e["std"] for e in table], capsize=3,
         color="tab:blue")
  ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right")
  ax.set_ylabel(f"test {metric}")
  low = min(e["mean"] - e["std"] for e in table)
  ax.set_ylim(max(0.0, low - 0.05), None)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def learning_curves(path: str, curves: dict[str, dict[int, float]], metric: str, split: str = "val",
                    title: str | None = None) -> None:
  """One line per label of `curves` ({label: {epoch: value}}; an empty curve draws nothing but keeps its colour).
  Integer epoch ticks; colour and marker per label."""
  plt = _pyplot()
  from matplotlib.ticker import MaxNLocator

  markers = "osD^vP*Xh<>p"
  colours = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
  fig, ax = plt.subplots(figsize=(7, 4))
  for i, (label, curve) in enumerate(curves.items()):
    if curve:
      epochs = sorted(curve)
      ax.plot(epochs, [curve[e] for e in epochs], label=label, color=colours(i % colours.N),
              marker=markers[i % len(markers)], markersize=5, lw=1.3)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.set_xlabel("epoch")
  ax.set_ylabel(f"{split} {metric}")
  if title:
    ax.set_title(title, fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def methods_plot(path: str, table: list[dict[str, Any]], chance: float, references: tuple[str, ...] = (),
                 controls: tuple[str, ...] = (), interval: str = "95% CI") -> None:
  """Bars of the mean metric per row with its interval (entries with "mean", "ci_low", "ci_high"); reference
  rows (teacher, ceiling) hatched and set apart on the left, controls grey, a dashed chance line; the y axis
  starts at chance (at 0 when an interval reaches below it)."""
  plt = _pyplot()
  refs = [e for e in table if e["method"] in references]
  rest = [e for e in table if e["method"] not in references]
  xs = list(range(len(refs))) + [len(refs) + 0.6 + i for i in range(len(rest))]
  entries = refs + rest
  fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(entries) + 2.5), 4.2))
  for x, e in zip(xs, entries):
    if e["method"] in references:
      style = dict(color="white", edgecolor="dimgray", hatch="//")
    elif e["method"] in controls:
      style = dict(color="silver", edgecolor="dimgray")
    else:
      style = dict(color="tab:blue", edgecolor="navy")
    low = e["mean"] - e["ci_low"] if np.isfinite(e["ci_low"]) else 0.0
    high = e["ci_high"] - e["mean"] if np.isfinite(e["ci_high"]) else 0.0
    ax.bar(x, e["mean"], yerr=[[low], [high]], capsize=3, linewidth=1, **style)
  ax.axhline(chance, color="crimson", ls="--", lw=1, label=f"chance ({chance:g})")
  if refs and rest:
    ax.axvline(len(refs) - 0.2, color="gray", lw=0.6, ls=":")
  ax.set_xticks(xs, [e["method"] for e in entries], rotation=35, ha="right", fontsize=8)
  ax.set_ylabel("test accuracy")
  lows = [e["ci_low"] for e in entries if np.isfinite(e["ci_low"])] or [chance]
  ax.set_ylim(chance if min(lows) >= chance else 0.0, 1.0)
  ax.set_title(f"error bars: {interval}; hatched: references (teacher sees physio; ridge probe on video); "
               "grey: controls", fontsize=8)
  ax.legend(fontsize=8, loc="upper right")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _size_points(rows: list[dict[str, Any]], sizes: list, method: str, metric: str, control: str
                 ) -> tuple[list, list]:
  """Per training size: the method's t interval over per-fold means, and its fold-aware difference to `control`."""
  curve, diffs = [], []
  for n in sizes:
    at_n = [r for r in rows if r["training_subjects"] == n]
    per_fold: dict[Any, list[float]] = {}
    for r in at_n:
      if r["method"] == method and metric in r:
        per_fold.setdefault(r["fold"], []).append(r[metric])
    if per_fold:
      curve.append((n, stats_lib.fold_t_interval([np.mean(v) for v in per_fold.values()])))
    if method != control and per_fold:
      c = stats_lib.compare(at_n, "method", control, metric, [method]).get(method)
      if c is not None:
        diffs.append((n, c))
  return curve, diffs


def training_size_plot(path: str, rows: list[dict[str, Any]], metric: str, control: str) -> None:
  """Left: mean test metric against training subjects (rows with "training_subjects"), one line per method with
  a 95% band over folds (t on the per-fold means). Right: each method's fold-aware difference to the `control`
  at each size, with its 95% band: the paired comparison the bands on the left cannot show."""
  plt = _pyplot()
  sizes = sorted({r["training_subjects"] for r in rows})
  fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
  markers = "osD^vP"
  for i, method in enumerate(sorted({r["method"] for r in rows})):
    curve, diffs = _size_points(rows, sizes, method, metric, control)
    style = {"marker": markers[i % len(markers)], "label": method, "color": f"C{i % 10}"}  # same in both panels
    for axis, points in ((ax, curve), (ax_diff, diffs)):
      if points:
        line, = axis.plot([n for n, _ in points], [c["diff"] for _, c in points], **style)
        banded = [(n, c) for n, c in points if stats_lib.supports_inference(c["folds"])]  # no band from few folds
        axis.fill_between([n for n, _ in banded], [c["diff_low"] for _, c in banded],
                          [c["diff_high"] for _, c in banded], color=line.get_color(), alpha=0.15)
  ax.axhline(0.5, color="crimson", ls="--", lw=1, label="chance")
  ax_diff.axhline(0.0, color="black", lw=1)
  for axis in (ax, ax_diff):
    axis.set_xticks(sizes)
    axis.set_xlabel("training subjects (teacher, T-Net and student)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  name = metric.removeprefix("test_")
  ax.set_ylabel(f"test {name}")
  ax.set_title("bands: 95% CI over folds (t on per-fold means); same test subjects at every size", fontsize=8)
  ax_diff.set_ylabel(f"test {name} - {control} control")
  ax_diff.set_title("fold-aware difference to the control, 95% CI (t over folds, unadjusted)", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def similarity_matrices(path: str, sims: dict[str, np.ndarray], labels: np.ndarray, titles: dict[str, str],
                        suptitle: str) -> None:
  """One panel per similarity matrix (samples sorted by `labels`, class boundaries drawn), each with the colour
  scale of the 1st-99th percentile of its off-diagonal values; `titles`: each panel's title."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(sims), figsize=(13, 4.2), constrained_layout=True)
  boundary = np.flatnonzero(np.diff(labels)) + 0.5
  for ax, (label, sim) in zip(axes, sims.items()):
    off = sim[~np.eye(len(sim), dtype=bool)]
    vmin, vmax = np.percentile(off, 1), np.percentile(off, 99)  # each panel's own range: structure, not level
    image = ax.imshow(sim, vmin=vmin, vmax=vmax, cmap="viridis", interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    for b in boundary:
      ax.axhline(b, color="white", lw=0.8)
      ax.axvline(b, color="white", lw=0.8)
    ax.set_title(titles[label], fontsize=9)
    ax.set_xlabel("test sample (sorted by label: 0 | 1)")
    ax.set_ylabel("test sample (sorted by label)")
  fig.suptitle(suptitle, fontsize=9)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def grouped_bars(path: str, groups: dict[str, list[dict[str, Any]]], order: list[str]) -> None:
  """Grouped bars: each row of `order`'s mean test accuracy in each group ({legend label: table entries with
  "method", "mean", "ci_low", "ci_high"}), with its interval where there is one."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(order) + 2), 4.2), constrained_layout=True)
  width = 0.8 / len(groups)
  for i, (label, table) in enumerate(groups.items()):
    entries = {e["method"]: e for e in table}
    xs = [j + (i - (len(groups) - 1) / 2) * width for j, name in enumerate(order) if name in entries]
    es = [entries[name] for name in order if name in entries]
    low = [e["mean"] - e["ci_low"] if np.isfinite(e["ci_low"]) else 0.0 for e in es]
    high = [e["ci_high"] - e["mean"] if np.isfinite(e["ci_high"]) else 0.0 for e in es]
    ax.bar(xs, [e["mean"] for e in es], width, yerr=[low, high], capsize=2, label=label)
  ax.axhline(0.5, color="crimson", ls="--", lw=1)
  ax.set_xticks(range(len(order)), order, rotation=30, ha="right", fontsize=8)
  ax.set_ylabel("test accuracy")
  ax.set_ylim(0.4, 1.0)
  ax.legend(fontsize=7, loc="upper right")
  fig.savefig(path, dpi=120)
  plt.close(fig)
