"""The report of a sweep root, rebuilt from its run directories' files (never from memory): summary.md,
summary.csv, summary.png (and training_size.png for a training-size sweep) under the root; and the stage table
of a `pkdot train` run.

Every method is compared with the task_only control and each method named in the sweep's `"contrasts"` with its
own reference; the tables name the hardware, config, seeds and command they came from (run_info.json,
sweep.json). A demo's or a protocol study's workdir has its own report (demo.py, protocols.py): `pkdot report`
chooses among them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pkdot_jax import errors
from pkdot_jax import metrics as metrics_lib
from pkdot_jax.study import methods as methods_lib
from pkdot_jax.study import plots, tables
from pkdot_jax.study import results as results_lib
from pkdot_jax.study import stats as stats_lib
from pkdot_jax.train import records


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


def controlled_table(rows: list[dict[str, Any]], other_keys: list[str], metric: str) -> str:
  """Per setting of `other_keys`, every method against the task_only control: fold-aware mean difference
  (per fold the mean over seeds, t over folds) with its 95% interval, p and Holm-adjusted p over the methods."""
  header = [*other_keys, "method", f"{metric} mean", "diff vs task_only [95% CI] (t over folds)", "p", "Holm p",
            "pairs"]
  lines = ["Against the same-architecture control:", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  settings = sorted({tuple(r.get(k) for k in other_keys) for r in rows}, key=tables.setting_order)
  for setting in settings:
    subset = [r for r in rows if tuple(r.get(k) for k in other_keys) == setting]
    methods = sorted({r["method"] for r in subset} - {methods_lib.CONTROL})
    result = stats_lib.compare(subset, "method", methods_lib.CONTROL, metric, methods)
    for name in [methods_lib.CONTROL, *methods]:
      values = [r[metric] for r in subset if r["method"] == name and metric in r]
      c = result.get(name)
      diff, p, p_holm = tables.diff_cells(c) if c else ("control", "", "")
      lines.append("| " + " | ".join([*(str(v) for v in setting), name, f"{np.mean(values):.3f}", diff, p, p_holm,
                                       str(c["pairs"]) if c else str(len(values))]) + " |")
  return "\n".join(lines)


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
    diff, p, p_holm = tables.diff_cells(c, adjusted[name])
    lines.append(f"| {name} | {contrasts[name]} | {diff} | {p} | {p_holm} | {c['pairs']} |")
  return "\n".join(lines)



def _group_keys(rows: list[dict[str, Any]], group_keys: list[str] | None) -> list[str]:
  """The given keys, or every override of the run names but the fold (["run"] when there is none)."""
  if group_keys is not None:
    return group_keys
  return sorted({k for r in rows for k in records.parse_run_name(r["run"]) if k != "data.fold"}) or ["run"]


def _control_parts(root: str, rows: list[dict[str, Any]], group_keys: list[str], metric: str, prov: dict,
                   by_size: bool) -> list[str]:
  """The parts of summary.md that compare with the task_only control: the controlled table, the sweep's
  contrasts, and for a training-size sweep its plot (written here)."""
  others = [k for k in group_keys if k != "method"]
  parts = ["", controlled_table(rows, others, metric)]
  if prov["contrasts"]:
    parts += ["", contrast_table(rows, prov["contrasts"], metric)]
  if by_size:
    plots.training_size_plot(os.path.join(root, "training_size.png"), rows, metric, methods_lib.CONTROL)
    parts += ["", "training_size.png: test accuracy against training subjects, and each method's difference to "
                  "the control."]
  return parts


def build_report(root: str, group_keys: list[str] | None = None) -> str:
  """summary.md, summary.csv and summary.png (training_size.png for a training-size sweep) under `root`, from
  its finished runs; returns summary.md's text."""
  rows = results_lib.collect(root)
  if not rows:
    raise errors.MissingError(f"no finished runs (student/result.json) under {root}")
  task = records.read_dict(records.config_path(records.run_dirs(root)[0]))["model"]["task"]
  metric = f"test_{primary_metric(task)}"
  group_keys = _group_keys(rows, group_keys)
  by_size = "data.val_fraction" in group_keys  # a training-size sweep: name the sizes, not the fractions
  if by_size:
    results_lib.add_training_subjects(root, rows)
    group_keys = ["training_subjects" if k == "data.val_fraction" else k for k in group_keys]
  table = sorted(summarize(rows, group_keys, metric),
                 key=lambda e: tables.setting_order(tuple(e[k] for k in group_keys)))
  prov = results_lib.provenance(root)
  parts = ["# Sweep summary", "", *tables.provenance_lines(prov), "", format_table(table, group_keys, metric)]
  controlled = "method" in group_keys and any(r.get("method") == methods_lib.CONTROL for r in rows)
  if controlled:
    parts += _control_parts(root, rows, group_keys, metric, prov, by_size)
  parts += ["", f"![{metric} per group](summary.png)"]
  if by_size and controlled:
    parts += ["", "![training size](training_size.png)"]
  text = "\n".join(parts)
  tables.write_csv(os.path.join(root, "summary.csv"), rows)
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(text + "\n")
  plots.bar_plot(os.path.join(root, "summary.png"), table, group_keys[0], metric.removeprefix("test_"))
  return text


def main(root: str, group_keys: list[str] | None = None) -> str:
  """Rebuilds the sweep report under `root` (build_report), prints it and where it is; returns its text."""
  text = build_report(root, group_keys)
  print(text)
  print(f"\nreport: {os.path.join(root, 'summary.md')}")
  return text
