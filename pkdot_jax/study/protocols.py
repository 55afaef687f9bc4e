"""The protocol study: the demo's rows on the same data under three evaluation settings, and what each leak adds.

  pkdot demo --protocols [--quick] [--methods=a,b] [--workdir=runs/protocols]

Published gains are measured under a protocol and a recipe; this study measures how much of a gain those can make
by themselves. Same data, seeds, epochs and rows (teacher, video-only, task-only control, PKDOT, MT-PKDOT,
generalized distillation, Hinton KD, SP) under:
  (a) `subject`         subject-disjoint folds, fixed epochs, the last epoch kept (the demo);
  (b) `authors`         the authors' clip-level folds stratified by class (clips of one subject in train and test)
                        with the best epoch of every stage picked on the test fold (`data.protocol="authors"`,
                        `data.select_on_test`);
  (c) `authors_frozen`  (b) plus the authors' student: its visual backbone is the video-only model's (stage
                        pretrain_video, trained as long as the teacher), frozen; fusion and head train
                        (`student_backbone="frozen_from_video"`).
(b) and (c) share their folds, teachers and T-Nets (the student-side field does not change the teacher): their
comparison is paired by fold. The video-only models of (c) are trained after every teacher, so they never
initialise one and the teachers of (b) and (c) stay those of the same config.

Statistics. Within a setting, as in the demo (stats.py): per-fold means over seeds, a Student-t interval over
folds, paired differences to the control and to the video-only student, Holm over the distillation methods.
Across settings ("inflation"): (b) - (a) compares two fold designs that share no folds, so it is Welch's interval
on the two sets of per-fold values; (c) - (b) is paired by fold. Holm over the rows of each inflation column.

Layout: <workdir>/subject/ and <workdir>/authors/ are sweep roots (runs/, teachers/, timing.jsonl);
<workdir>/protocols.json says what ran; <workdir>/report/ holds report.md, results.csv, summary.json and
protocols.png; `pkdot report WORKDIR` rebuilds it from the run directories.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import numpy as np

from pkdot_jax import errors
from pkdot_jax.study import demo as demo_lib
from pkdot_jax.study import methods as methods_lib
from pkdot_jax.study import plots
from pkdot_jax.study import results as results_lib
from pkdot_jax.study import stats as stats_lib
from pkdot_jax.study import sweep as sweep_lib
from pkdot_jax.study import tables as tables_lib
from pkdot_jax.study import timing as timing_lib
from pkdot_jax.train import records
from pkdot_jax.train.programs import Context

INFO_FILE = "protocols.json"
METRIC = "test_accuracy"
TEACHER = demo_lib.TEACHER


@dataclasses.dataclass(frozen=True)
class Setting:
  key: str           # the rows' "setting"
  label: str         # what it is, in words
  column: str        # its column in the report's tables
  root: str          # the sweep root under the workdir
  student_backbone: str


SETTINGS = (
    Setting("subject", "(a) subject-disjoint folds, fixed epochs (last kept)", "(a) subject", "subject", "finetune"),
    Setting("authors", "(b) clip-level folds, best epoch on the test fold", "(b) authors", "authors", "finetune"),
    Setting("authors_frozen", "(c) = (b) + frozen student backbone from the video-only model",
            "(c) authors + frozen", "authors", "frozen_from_video"),
)
# (b) and (c): the authors' evaluation. The video-only model (pretrain_video) trains as long as the teacher.
AUTHORS_BASE = {"data.protocol": "authors", "data.select_on_test": True}


def _epochs(quick: bool) -> int:
  config = sweep_lib.load_config(f"{demo_lib.CONFIG}:{'demo_quick' if quick else 'demo'}")
  return int(config.stages.teacher.num_epochs)


def plan(quick: bool, methods: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
  """{sweep root: its sweeps in the order they run}: teachers and T-Nets of every fold, then (authors root) the
  video-only models, then the students."""
  students = demo_lib.demo_sweep(quick, methods)
  folds = students["grid"]["data.fold"]
  authors_base = {**students["base"], **AUTHORS_BASE, "stages.pretrain_video.num_epochs": _epochs(quick)}
  authors = {**students, "base": authors_base,
             "grid": {**students["grid"], "student_backbone": ["finetune", "frozen_from_video"]}}
  video_models = {"config": students["config"], "base": authors_base,  # run names apart from the teachers'
                  "grid": {"pipeline": [("pretrain_video",)], "data.fold": folds}, "desc": "video-only models"}
  return {"subject": [demo_lib.teacher_sweep(students), students],
          "authors": [demo_lib.teacher_sweep(authors), video_models, authors]}


def main(workdir: str = "runs/protocols", quick: bool = False, methods: tuple[str, ...] | None = None,
         context: Context | None = None) -> str:
  """Runs (or resumes) the three settings into `workdir`, then builds and prints the report."""
  context = context or Context()
  methods = tuple(methods or methods_lib.DEMO_METHODS)
  sweeps = plan(quick, methods)
  info = {"mode": "quick" if quick else "default", "config": sweeps["subject"][1]["config"],
          "methods": list(methods), "folds": sweeps["subject"][1]["grid"]["data.fold"],
          "seeds": list(demo_lib.SEEDS), "settings": [dataclasses.asdict(s) for s in SETTINGS], "wall_seconds": {}}
  path = os.path.join(workdir, INFO_FILE)
  if os.path.exists(path):
    saved = records.read_dict(path)
    for field in ("mode", "config", "methods", "folds", "seeds"):
      if saved.get(field) != info[field]:  # checked before anything is written: the study stays as it was
        raise errors.UsageError(f"{path} holds a protocol study with {field}={saved.get(field)!r}, not "
                                f"{info[field]!r}: use another --workdir, or the original flags to resume it")
    info["wall_seconds"] = saved.get("wall_seconds", {})
  os.makedirs(workdir, exist_ok=True)
  records.write_json(path, info, indent=2)
  for root, root_sweeps in sweeps.items():
    t0 = time.time()
    for sweep in root_sweeps:
      phase = "students" if sweep is root_sweeps[-1] else "teachers"
      with timing_lib.RunTimer(os.path.join(workdir, root), phase) as timer:
        sweep_lib.run_sweep(sweep, os.path.join(workdir, root), after_run=timer, context=context)
    info["wall_seconds"][root] = time.time() - t0  # this invocation's time (a resumed one: the rest)
    records.write_json(path, info, indent=2)
  return show_report(workdir)


def show_report(workdir: str) -> str:
  """Builds the report of a protocol study's `workdir` (build_report), prints it and where it is; returns its
  text."""
  text = build_report(workdir)
  print(text)
  print(f"\nreport: {os.path.join(workdir, 'report', 'report.md')}")
  return text


def is_protocols(root: str) -> bool:
  return os.path.exists(os.path.join(root, INFO_FILE))


# ------------------------------------------------------------------------------------------------- rows
def setting_rows(workdir: str, info: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
  """{setting: its rows}: every finished student member (method, fold, seed, metrics) and the teachers'."""
  out = {}
  for setting in SETTINGS:
    root = os.path.join(workdir, setting.root)
    students = [r for r in results_lib.collect(root) if r.get("method") in info["methods"]
                and r.get("student_backbone", "finetune") == setting.student_backbone]
    out[setting.key] = [{**r, "setting": setting.key} for r in demo_lib.teacher_rows(root) + students]
  return out


def _fold_values(rows: list[dict[str, Any]], method: str, control: str | None = None) -> dict[Any, float]:
  """{fold: mean over seeds} of the metric of `method`, or of its paired difference to `control`."""
  mine = [r for r in rows if r["method"] == method and METRIC in r]
  if control is not None:
    return stats_lib.fold_differences(mine, [r for r in rows if r["method"] == control], METRIC)
  per_fold: dict[Any, list[float]] = {}
  for r in mine:
    per_fold.setdefault(r["fold"], []).append(float(r[METRIC]))
  return {fold: float(np.mean(v)) for fold, v in sorted(per_fold.items())}


def inflation(rows: dict[str, list[dict[str, Any]]], order: list[str], control: str | None = None
              ) -> dict[str, dict[str, dict[str, float]]]:
  """{leak: {row: comparison}}: "b-a" (Welch over the per-fold values of two fold designs) and "c-b" (paired by
  fold), of each row's accuracy (control None) or of its difference to `control`; Holm over the rows of a leak."""
  out: dict[str, dict[str, dict[str, float]]] = {"b-a": {}, "c-b": {}}
  for name in order:
    if name == control:
      continue
    a, b, c = (_fold_values(rows[s.key], name, control) for s in SETTINGS)
    if a and b:
      out["b-a"][name] = stats_lib.welch_interval(b.values(), a.values())
    shared = sorted(set(b) & set(c))
    if shared and name != TEACHER:  # (b) and (c) share their teachers
      out["c-b"][name] = stats_lib.fold_t_interval([c[f] - b[f] for f in shared])
  for leak in out.values():
    adjusted = stats_lib.holm({name: comparison["p"] for name, comparison in leak.items()})
    for name, comparison in leak.items():
      comparison["p_holm"] = adjusted[name]
  return out


# ------------------------------------------------------------------------------------------------ report
def _cell(c: dict[str, float] | None, inference: bool, signed: bool = True) -> str:
  if not c or not np.isfinite(c.get("diff", np.nan)):
    return ""
  value = f"{c['diff']:+.3f}" if signed else f"{c['diff']:.3f}"
  if not inference or not np.isfinite(c.get("diff_low", np.nan)):
    return value
  text = f"{value} [{c['diff_low']:+.3f}, {c['diff_high']:+.3f}]"
  return text + (f", Holm p {c['p_holm']:.3f}" if np.isfinite(c.get("p_holm", np.nan)) else "")


def _accuracy_cell(entry: dict[str, Any] | None) -> str:
  if entry is None:
    return ""
  if not entry["inference"]:
    return f"{entry['mean']:.3f} ({entry['n']} runs)"
  return f"{entry['mean']:.3f} [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"


def accuracy_table(tables: dict[str, list[dict]], leaks: dict, order: list[str], inference: bool) -> str:
  header = ["row", *(s.column for s in SETTINGS), "(b) - (a)", "(c) - (b)"]
  lines = []
  for name in order:
    entries = [next((e for e in tables[s.key] if e["method"] == name), None) for s in SETTINGS]
    lines.append([name, *map(_accuracy_cell, entries), _cell(leaks["b-a"].get(name), inference),
                  _cell(leaks["c-b"].get(name), inference)])
  return tables_lib.markdown(header, lines)


def difference_table(tables: dict[str, list[dict]], leaks: dict, order: list[str], key: str,
                     inference: bool) -> str:
  """Each method's difference to a reference row under each setting (`key`: "vs_control" / "vs_video_only"),
  and how the leaks move that difference."""
  header = ["method", *(s.column for s in SETTINGS), "(b) - (a)", "(c) - (b)"]
  lines = []
  for name in order:
    cells = []
    for s in SETTINGS:
      entry = next((e for e in tables[s.key] if e["method"] == name), {})
      cells.append(_cell(entry.get(key), inference))
    if any(cells):
      lines.append([name, *cells, _cell(leaks["b-a"].get(name), inference), _cell(leaks["c-b"].get(name), inference)])
  return tables_lib.markdown(header, lines)


def _findings(leaks: dict[str, dict[str, dict[str, dict]]], inference: bool) -> list[str]:
  """One sentence per inflation family: the rows whose Holm-adjusted p is below 0.05 (from the numbers alone)."""
  if not inference:
    return ["Too few folds for intervals: the tables show means only."]
  lines = []
  for family, by_leak in leaks.items():
    for leak, comparisons in by_leak.items():
      moved = [f"{name} {c['diff']:+.3f}" for name, c in comparisons.items()
               if np.isfinite(c.get("p_holm", np.nan)) and c["p_holm"] < 0.05]
      lines.append(f"- {family}, {leak}: " + (", ".join(moved) + " (Holm p < 0.05)" if moved
                                              else "no row moves at Holm p < 0.05") + ".")
  return lines


def build_report(workdir: str) -> str:
  """report.md, results.csv, summary.json and protocols.png under <workdir>/report/, from the run directories."""
  info = records.read_dict(os.path.join(workdir, INFO_FILE))
  methods = list(info["methods"])
  rows = setting_rows(workdir, info)
  order = [TEACHER, *methods]
  tables = {s.key: demo_lib.comparison_table(rows[s.key], order) for s in SETTINGS}
  inference = all(e["inference"] for table in tables.values() for e in table)
  distill = [m for m in methods if m not in (methods_lib.CONTROL, methods_lib.VIDEO_ONLY)]
  leaks = {"accuracy": inflation(rows, order),
           f"difference to {methods_lib.CONTROL}": inflation(rows, [methods_lib.VIDEO_ONLY, *distill],
                                                               methods_lib.CONTROL),
           f"difference to {methods_lib.VIDEO_ONLY}": inflation(rows, [methods_lib.CONTROL, *distill],
                                                                  methods_lib.VIDEO_ONLY)}
  out_dir = os.path.join(workdir, "report")
  os.makedirs(out_dir, exist_ok=True)
  tables_lib.write_csv(os.path.join(out_dir, "results.csv"), [r for s in SETTINGS for r in rows[s.key]])
  plots.grouped_bars(os.path.join(out_dir, "protocols.png"), {s.label: tables[s.key] for s in SETTINGS}, order)
  text = _report_text(workdir, info, tables, leaks, order, distill, inference)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump({"tables": tables, "inflation": leaks, "wall_seconds": info.get("wall_seconds")}, f, indent=2,
              default=float)
  return text


def _report_text(workdir: str, info: dict, tables: dict, leaks: dict, order: list[str], distill: list[str],
                 inference: bool) -> str:
  folds, seeds = info["folds"], info["seeds"]
  control, video = methods_lib.CONTROL, methods_lib.VIDEO_ONLY
  wall = info.get("wall_seconds") or {}
  trained = {root: sum(t["wall_s"] for t in timing_lib.read_timing(os.path.join(workdir, root)).values())
             for root in dict.fromkeys(s.root for s in SETTINGS)}
  interval = ("95% interval over folds" if inference else
              f"means only: {len(folds)} folds are fewer than the {stats_lib.MIN_FOLDS} an interval needs")
  return "\n".join([
      "# pkdot-jax protocol study: the demo's rows under three evaluation settings"
      + (" (quick smoke run)" if info["mode"] == "quick" else ""), "",
      *([demo_lib.SMOKE_NOTE, ""] if info["mode"] == "quick" else []),
      f"Same synthetic data, {len(folds)} folds x {len(seeds)} seeds per row and setting, same epochs. Settings: "
      + "; ".join(s.label for s in SETTINGS) + ". Within a setting, cells are the mean test accuracy with a "
      f"{interval}; differences are paired by fold and seed with Holm over the {len(distill)} distillation methods "
      "(as in the demo). '(b) - (a)': what the clip-level folds with test-fold selection add (Welch over the two "
      "sets of per-fold values: the fold designs share no folds); '(c) - (b)': what the frozen student backbone "
      "adds (paired by fold: same folds and teachers). Holm over the rows of each inflation column.", "",
      "\n".join(tables_lib.provenance_lines(results_lib.provenance(os.path.join(workdir, "subject")))), "",
      "## Test accuracy", "", accuracy_table(tables, leaks["accuracy"], order, inference), "",
      f"## Difference to the same-architecture control ({control})", "",
      difference_table(tables, leaks[f"difference to {control}"], [video, *distill], "vs_control", inference), "",
      f"## Difference to the video-only student ({video})", "",
      difference_table(tables, leaks[f"difference to {video}"], [control, *distill], "vs_video_only", inference),
      "", "## What the leaks move", "", *_findings(leaks, inference), "",
      "Wall time: summed over the runs as they trained (timing.jsonl) "
      + ", ".join(f"{root}/ {seconds:.0f} s" for root, seconds in trained.items()) + "; the last invocation "
      + ", ".join(f"{root}/ {seconds:.0f} s" for root, seconds in wall.items()) + ".", "",
      "![test accuracy per row and setting](protocols.png)"])
