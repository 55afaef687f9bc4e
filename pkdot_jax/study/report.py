"""Tables and plots rebuilt from run directories' files (never from memory): `pkdot report WORKDIR`.

Works on a single run (a workdir with config.json), a sweep root (runs/ and teachers/ inside) or the demo's
root. Every table names the hardware, config, seeds and command it came from (read from run_info.json and
sweep.json).
"""

from __future__ import annotations

import csv
import glob
import os
from typing import Any

import numpy as np

from pkdot_jax import errors
from pkdot_jax import metrics as metrics_lib
from pkdot_jax.study import stats as stats_lib
from pkdot_jax.train import loop, records


def primary_metric(task: str) -> str:
  return "accuracy" if task == "classification" else "ccc_mean"


def stage_table(results: dict[str, Any]) -> str:
  """A compact text table of a `pkdot train` run: per stage and member, the test metrics at the best epoch."""
  lines = [f"{'stage':<20} {'member':<16} {'best epoch':>10}  test metrics"]
  for stage, result in results.items():
    for member in result.get("members", []):
      test = member.get("test") or {}
      shown = {k: round(v, 4) for k, v in test.items() if isinstance(v, float)}
      lines.append(f"{stage:<20} {member['member']:<16} {member['best_epoch']:>10}  {shown}")
  return "\n".join(lines)


def collect(root: str) -> list[dict[str, Any]]:
  """One row per (run, member) with a finished student stage: its overrides, seed, fold, test metrics."""
  rows = []
  for run_dir in records.run_dirs(root):
    result_path = records.result_path(run_dir, "student")
    if not os.path.exists(result_path):
      continue
    config = records.read_dict(records.config_path(run_dir))
    result = records.read_dict(result_path)
    overrides = records.parse_run_name(os.path.basename(run_dir))
    for member in result["members"]:
      row = {"run": os.path.basename(run_dir), **overrides, "fold": config["data"]["fold"],
             "seed": member["seed"], "weight": member["weight"], "best_epoch": member["best_epoch"],
             "seconds": result["seconds"] / max(len(result["members"]), 1)}
      for split in ("val", "test"):
        for key, value in (member.get(split) or {}).items():
          if isinstance(value, (int, float)):
            row[f"{split}_{key}"] = value
      rows.append(row)
  return rows


def summarize(rows: list[dict[str, Any]], group_keys: list[str], metric: str,
              baseline: dict[str, str] | None = None) -> list[dict[str, Any]]:
  """Mean +- std of `metric` over folds x seeds per group; with `baseline` (a group) and at least
  `stats.MIN_FOLDS` folds, the paired difference to it (same fold and seed) with a 95% Student-t interval."""
  groups: dict[tuple, list[dict[str, Any]]] = {}
  for row in rows:
    groups.setdefault(tuple(row.get(k) for k in group_keys), []).append(row)
  base_rows = None
  if baseline is not None:
    base_rows = {(r["fold"], r["seed"]): r[metric] for r in rows
                 if all(r.get(k) == v for k, v in baseline.items()) and metric in r}
  table = []
  for key, members in groups.items():
    values = [r[metric] for r in members if metric in r]
    mean, std = metrics_lib.mean_std(values)
    entry = {**dict(zip(group_keys, key)), "n": len(values), "mean": mean, "std": std,
             "seconds": float(np.sum([r["seconds"] for r in members]))}
    if base_rows is not None:
      pairs = [(r[metric], base_rows[(r["fold"], r["seed"])]) for r in members
               if (r["fold"], r["seed"]) in base_rows and metric in r]
      folds = {r["fold"] for r in members if (r["fold"], r["seed"]) in base_rows}
      if pairs and stats_lib.supports_inference(len(folds)):
        diff, low, high = metrics_lib.paired_difference_ci([p[0] for p in pairs], [p[1] for p in pairs])
        entry.update({"diff": diff, "diff_low": low, "diff_high": high})
    table.append(entry)
  return table


def provenance(root: str) -> dict[str, Any]:
  """Hardware, versions, command and seeds from the first run_info.json found under root."""
  infos = sorted(glob.glob(os.path.join(root, "**", records.RUN_INFO), recursive=True))
  info = (records.read_json(infos[0]) or [{}])[0] if infos else {}
  sweep = records.read_dict(records.sweep_path(root), default={})
  return {"hardware": info.get("hardware"), "versions": info.get("versions"), "git": info.get("git_revision"),
          "command": sweep.get("command") or info.get("command"), "config": sweep.get("config"),
          "base": sweep.get("base"), "seeds": (info.get("config") or {}).get("seeds"),
          "contrasts": sweep.get("contrasts") or {}, "failed": failed_runs(root)}


def failed_runs(root: str) -> dict[str, str]:
  """{run name: error} of the runs a sweep recorded as failed (`<run>/failed.json`): left out of the tables,
  and named in every report so that nothing is dropped silently."""
  return {os.path.basename(os.path.dirname(path)): records.read_dict(path).get("error", "(no message recorded)")
          for path in sorted(glob.glob(records.failed_path(records.run_dir(root, "*"))))}


def format_table(table: list[dict[str, Any]], group_keys: list[str], metric: str) -> str:
  header = [*group_keys, f"{metric} mean +- std", "n", "diff vs baseline [95% CI]", "wall s"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for e in table:
    diff = ""
    if "diff" in e:
      diff = f"{e['diff']:+.4f} [{e['diff_low']:+.4f}, {e['diff_high']:+.4f}]"
    lines.append("| " + " | ".join([*(str(e[k]) for k in group_keys), f"{e['mean']:.4f} +- {e['std']:.4f}",
                                    str(e["n"]), diff, f"{e['seconds']:.0f}"]) + " |")
  return "\n".join(lines)


def provenance_lines(prov: dict[str, Any]) -> list[str]:
  hw = prov.get("hardware") or {}
  return [f"- hardware: {hw.get('device_kind')} x{hw.get('num_devices')} ({hw.get('platform')}), "
          f"{hw.get('cpu_count')} host CPUs",
          f"- config: {prov.get('config')} with {prov.get('base')}",
          f"- seeds: {prov.get('seeds')}",
          f"- command: `{prov.get('command')}`",
          f"- versions: {prov.get('versions')}, git {prov.get('git')}"] + [
              f"- FAILED, left out of the tables: {name}: {error.splitlines()[0]}"
              for name, error in (prov.get("failed") or {}).items()]


def format_provenance(root: str) -> str:
  return "\n".join(provenance_lines(provenance(root)))


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
  keys = sorted({k for r in rows for k in r})
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)


def bar_plot(path: str, table: list[dict[str, Any]], label_key: str, metric: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

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


def learning_curves(path: str, run_dirs: dict[str, Any], metric: str, split: str = "val",
                    title: str | None = None) -> None:
  """`split` metric per epoch of the student stage, one line per label: the mean over its members and over the
  run directories given for it (a path or a list of paths). Integer epoch ticks; colour and marker per label."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import MaxNLocator

  markers = "osD^vP*Xh<>p"
  colours = plt.get_cmap("tab10" if len(run_dirs) <= 10 else "tab20")
  fig, ax = plt.subplots(figsize=(7, 4))
  for i, (label, dirs) in enumerate(run_dirs.items()):
    per_epoch: dict[int, list[float]] = {}
    for run_dir in [dirs] if isinstance(dirs, str) else dirs:
      for r in loop.read_metrics(run_dir):
        if r["stage"] == "student" and split in r:
          per_epoch.setdefault(r["epoch"], []).extend(m[metric] for m in r[split])
    if per_epoch:
      epochs = sorted(per_epoch)
      ax.plot(epochs, [np.mean(per_epoch[e]) for e in epochs], label=label, color=colours(i % colours.N),
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
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

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


CONTROL = "task_only"  # methods.CONTROL (not imported: methods does not depend on the report)


def _training_subjects(run_dir: str) -> int:
  """Training subjects of a run's fold, from its config (the folds the loader builds)."""
  from pkdot_jax.data import folds as folds_lib

  config = records.read_dict(records.config_path(run_dir))
  d = config["data"]
  overrides = d.get("overrides") or {}
  subjects = np.repeat(np.arange(int(overrides.get("num_subjects", 20))), int(overrides.get("samples_per_subject", 30)))
  train = folds_lib.subject_folds(subjects, int(d["num_folds"]), float(d["val_fraction"]), int(d["fold_seed"]))
  return int(np.unique(subjects[train[int(d["fold"])][0]]).size)


def _setting_order(setting: tuple) -> list:
  """Numbers in numeric order (8 before 16), then everything else as text."""
  return [(0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in setting]


def controlled_table(rows: list[dict[str, Any]], other_keys: list[str], metric: str) -> str:
  """Per setting of `other_keys`, every method against the task_only control: fold-aware mean difference
  (per fold the mean over seeds, t over folds) with its 95% interval, p and Holm-adjusted p over the methods."""
  header = [*other_keys, "method", f"{metric} mean", "diff vs task_only [95% CI] (t over folds)", "p", "Holm p",
            "pairs"]
  lines = ["Against the same-architecture control:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  settings = sorted({tuple(r.get(k) for k in other_keys) for r in rows}, key=_setting_order)
  for setting in settings:
    subset = [r for r in rows if tuple(r.get(k) for k in other_keys) == setting]
    methods = sorted({r["method"] for r in subset} - {CONTROL})
    result = stats_lib.compare(subset, "method", CONTROL, metric, methods)
    for name in [CONTROL, *methods]:
      values = [r[metric] for r in subset if r["method"] == name and metric in r]
      c = result.get(name)
      diff, p, p_holm = _diff_cells(c) if c else ("control", "", "")
      lines.append("| " + " | ".join([*(str(v) for v in setting), name, f"{np.mean(values):.3f}", diff, p, p_holm,
                                       str(c["pairs"]) if c else str(len(values))]) + " |")
  return "\n".join(lines)


def _diff_cells(c: dict[str, Any], p_holm: float | None = None) -> tuple[str, str, str]:
  """(difference [95% CI], p, Holm p) of a fold-aware comparison; from fewer than stats.MIN_FOLDS folds the mean
  difference alone, marked, and no p-values."""
  if not stats_lib.supports_inference(c["folds"]):
    return f"{c['diff']:+.3f} (mean; {c['folds']} folds, no interval)", "", ""
  p_holm = c["p_holm"] if p_holm is None else p_holm
  return f"{c['diff']:+.3f} [{c['diff_low']:+.3f}, {c['diff_high']:+.3f}]", f"{c['p']:.3f}", f"{p_holm:.3f}"


def contrast_table(rows: list[dict[str, Any]], contrasts: dict[str, str], metric: str) -> str:
  """Each method of `contrasts` against its own reference (e.g. PKDOT + generalized distillation against
  generalized distillation alone): the same fold-aware interval, Holm over these contrasts."""
  results = {name: stats_lib.compare(rows, "method", reference, metric, [name]).get(name)
             for name, reference in contrasts.items()}
  results = {name: c for name, c in results.items() if c is not None}
  adjusted = stats_lib.holm({name: c["p"] for name, c in results.items()})
  lines = ["Contrasts named by the sweep (fold-aware, Holm over these contrasts):", "",
           "| method | reference | diff [95% CI] (t over folds) | p | Holm p | pairs |", "|---|---|---|---|---|---|"]
  for name, c in results.items():
    diff, p, p_holm = _diff_cells(c, adjusted[name])
    lines.append(f"| {name} | {contrasts[name]} | {diff} | {p} | {p_holm} | {c['pairs']} |")
  return "\n".join(lines)


def add_training_subjects(root: str, rows: list[dict[str, Any]]) -> None:
  """Sets row["training_subjects"] (read from each run's config) on every row."""
  sizes: dict[str, int] = {}
  for r in rows:
    if r["run"] not in sizes:
      sizes[r["run"]] = _training_subjects(records.run_dir(root, r["run"]))
    r["training_subjects"] = sizes[r["run"]]


def training_size_plot(path: str, rows: list[dict[str, Any]], metric: str) -> None:
  """Left: mean test metric against training subjects (rows with "training_subjects"), one line per method with
  a 95% band over folds (t on the per-fold means). Right: each method's fold-aware difference to the task_only
  control at each size, with its 95% band: the paired comparison the bands on the left cannot show."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sizes = sorted({r["training_subjects"] for r in rows})
  fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
  markers = "osD^vP"
  for i, method in enumerate(sorted({r["method"] for r in rows})):
    curve, diffs = [], []
    for n in sizes:
      at_n = [r for r in rows if r["training_subjects"] == n]
      per_fold: dict[Any, list[float]] = {}
      for r in at_n:
        if r["method"] == method and metric in r:
          per_fold.setdefault(r["fold"], []).append(r[metric])
      if per_fold:
        curve.append((n, stats_lib.fold_t_interval([np.mean(v) for v in per_fold.values()])))
      if method != CONTROL and per_fold:
        c = stats_lib.compare(at_n, "method", CONTROL, metric, [method]).get(method)
        if c is not None:
          diffs.append((n, c))
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
  ax_diff.set_ylabel(f"test {name} - task_only control")
  ax_diff.set_title("fold-aware difference to the control, 95% CI (t over folds, unadjusted)", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(root: str, group_keys: list[str] | None = None) -> str:
  """Rebuilds summary.md / summary.csv / plots under root and prints the table; a demo workdir (demo.json)
  gets exactly the demo's report, rebuilt under root/report/."""
  from pkdot_jax.study import demo, protocols
  if protocols.is_protocols(root) and group_keys is None:
    text = protocols.build_report(root)
    print(text)
    print(f"\nreport: {os.path.join(root, 'report', 'report.md')}")
    return text
  if demo.is_demo(root) and group_keys is None:
    text = demo.build_report(root)
    print(text)
    print(f"\nreport: {os.path.join(root, 'report', 'report.md')}")
    return text
  rows = collect(root)
  if not rows:
    raise errors.MissingError(f"no finished runs (student/result.json) under {root}")
  task = records.read_dict(records.config_path(records.run_dirs(root)[0]))["model"]["task"]
  metric = f"test_{primary_metric(task)}"
  if group_keys is None:
    group_keys = sorted({k for r in rows for k in records.parse_run_name(r["run"]) if k != "data.fold"}) or ["run"]
  by_size = "data.val_fraction" in group_keys  # a training-size sweep: name the sizes, not the fractions
  if by_size:
    add_training_subjects(root, rows)
    group_keys = ["training_subjects" if k == "data.val_fraction" else k for k in group_keys]
  table = sorted(summarize(rows, group_keys, metric), key=lambda e: _setting_order(tuple(e[k] for k in group_keys)))
  prov = provenance(root)
  parts = ["# Sweep summary", "", *provenance_lines(prov), "", format_table(table, group_keys, metric)]
  if "method" in group_keys and any(r.get("method") == CONTROL for r in rows):
    others = [k for k in group_keys if k != "method"]
    parts += ["", controlled_table(rows, others, metric)]
    contrasts = prov["contrasts"]
    if contrasts:
      parts += ["", contrast_table(rows, contrasts, metric)]
    if by_size:
      training_size_plot(os.path.join(root, "training_size.png"), rows, metric)
      parts += ["", "training_size.png: test accuracy against training subjects, and each method's difference to "
                    "the control."]
  parts += ["", f"![{metric} per group](summary.png)"]
  if by_size and "method" in group_keys and any(r.get("method") == CONTROL for r in rows):
    parts += ["", "![training size](training_size.png)"]
  text = "\n".join(parts)
  write_csv(os.path.join(root, "summary.csv"), rows)
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(text + "\n")
  bar_plot(os.path.join(root, "summary.png"), table, group_keys[0], metric.removeprefix("test_"))
  print(text)
  print(f"\nreport: {os.path.join(root, 'summary.md')}")
  return text
