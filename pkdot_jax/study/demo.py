"""The main job: PKDOT and its controls on the embedded synthetic dataset, end to end, on a CPU.

  pkdot demo [--quick | --all] [--workdir=runs/demo]

Generates the synthetic dataset (seconds), trains one multimodal teacher (video + physiological signal) and one
T-Net per subject-disjoint fold and seed, then one student per method (pkdot_jax/study/methods.py) per fold,
the seeds of a run trained as its members. Rows: the teacher, the video ceiling (a ridge probe on hand-made
video features, same data and folds), the video-only student, the same-architecture control (T-Net + fusion
student, task loss only), PKDOT, MT-PKDOT, the two positive controls (generalized distillation, Hinton KD) and
SP. Every distillation row's primary comparison is with the control: per fold the mean over seeds of the paired
differences, a Student-t interval over folds, and Holm-adjusted p-values over the methods (stats.py).

`--all` is the full comparison: every registry loss the trainer can feed, each with its distillation weight
chosen on validation subjects among three values (one member per value). `--quick` is a smoke run with the
same rows on tiny sizes.

Writes <workdir>/report/: report.md, results.csv, summary.json, methods.png, learning_curves.png,
similarity.png; `pkdot report WORKDIR` rebuilds exactly that folder from the run directories (demo.json
records what was run). The synthetic benefit of privileged information is a property of data we designed
(pkdot_jax/data/synthetic): a demonstration of the machinery, not a reproduction of the paper.
"""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Any

import jax
import numpy as np

from pkdot_jax import errors
from pkdot_jax import metrics as metrics_lib
from pkdot_jax.study import methods as methods_lib
from pkdot_jax.study import plots, tables
from pkdot_jax.study import timing as timing_lib
from pkdot_jax.study import results as results_lib
from pkdot_jax.study import stats as stats_lib
from pkdot_jax.study import sweep as sweep_lib
from pkdot_jax.train import records
from pkdot_jax.train.programs import Context

CONFIG = "synthetic"  # a built-in config name (pkdot_jax/configs)
SEEDS = (0, 1)
TEACHER = "teacher (video + physio)"
CEILING = "video ceiling (ridge probe)"
CONFIDENCE = 0.95


def _variant(quick: bool, full: bool) -> str:
  if quick and full:
    raise errors.UsageError("choose one of --quick and --all")
  return "demo_quick" if quick else "demo_all" if full else "demo"


def _run_method(name: str, full: bool) -> str:
  """The sweep's method name of a row: in the full comparison a distillation loss carries its weight grid."""
  if full and name not in (methods_lib.VIDEO_ONLY, methods_lib.CONTROL):
    return name + methods_lib.GRID_SUFFIX
  return name


def demo_sweep(quick: bool, methods: tuple[str, ...] = methods_lib.DEMO_METHODS, full: bool = False) -> dict:
  for needed in (methods_lib.VIDEO_ONLY, methods_lib.CONTROL):
    if needed not in methods:
      raise errors.UsageError(f"the demo compares every method with {methods_lib.CONTROL} and "
                              f"{methods_lib.VIDEO_ONLY}: include {needed}")
  config = sweep_lib.load_config(f"{CONFIG}:{_variant(quick, full)}")
  return {"config": f"{CONFIG}:{_variant(quick, full)}", "base": {"seeds": SEEDS},
          "grid": {"method": [_run_method(m, full) for m in methods],
                   "data.fold": list(range(int(config.data.num_folds)))},
          "desc": "students"}


def teacher_sweep(sweep: dict) -> dict:
  """The teachers and T-Nets of every fold, trained before the students (their time is then not charged to the
  first method); the student runs find them done in the shared teacher directories."""
  return {"config": sweep["config"], "base": {**sweep["base"], "pipeline": ("teacher", "tnet")},
          "grid": {"data.fold": sweep["grid"]["data.fold"]}, "desc": "teachers"}


# ------------------------------------------------------------------------------------------ the references
def teacher_rows(root: str) -> list[dict]:
  rows = []
  for result_path in records.teacher_result_paths(root):
    config = records.read_dict(records.config_path(os.path.dirname(os.path.dirname(result_path))))
    for member in records.read_dict(result_path)["members"]:
      rows.append({"method": TEACHER, "fold": config["data"]["fold"], "seed": member["seed"],
                   **{f"test_{k}": v for k, v in (member.get("test") or {}).items() if isinstance(v, float)}})
  return rows


def ceiling_rows(root: str, config_spec: str, folds: list[int]) -> list[dict]:
  """The ridge probe on the same data and folds (computed once, kept in ceiling.json); one row per fold."""
  path = records.demo_file(root, "ceiling")
  if not os.path.exists(path):
    from pkdot_jax.data.synthetic import builder, usefulness

    config = sweep_lib.load_config(config_spec)
    d = config.data
    spec = builder.make_config(d.config_name, int(d.dataset_seed), **dict(d.overrides)).spec
    by_fold = usefulness.video_probe_by_fold(spec, int(d.dataset_seed), int(d.num_folds), float(d.val_fraction),
                                             int(d.fold_seed), folds)
    records.write_json(path, {str(k): v for k, v in by_fold.items()}, indent=2)
  by_fold = {int(k): v for k, v in records.read_dict(path).items()}
  return [{"method": CEILING, "fold": k, "seed": 0, "test_accuracy": v} for k, v in sorted(by_fold.items())]


# ------------------------------------------------------------------------------------- weight selection
def select_weights(rows: list[dict], metric: str = "accuracy") -> tuple[list[dict], dict[str, dict]]:
  """Full comparison: per method, the weight with the best mean validation metric over all folds x seeds; the
  rows of that weight only (method names without the grid suffix), and {method: {weight: mean val}}."""
  kept, chosen = [], {}
  by_method: dict[str, list[dict]] = {}
  for r in rows:
    by_method.setdefault(r["method"], []).append(r)
  for name, group in by_method.items():
    base = methods_lib.base_name(name)
    weights = sorted({r["weight"] for r in group})
    val = {w: float(np.mean([r[f"val_{metric}"] for r in group if r["weight"] == w and f"val_{metric}" in r]
                            or [np.nan])) for w in weights}
    best = max(weights, key=lambda w: (np.nan_to_num(val[w], nan=-np.inf), -abs(np.log(w) if w > 0 else 0)))
    if len(weights) > 1:
      chosen[base] = {"weights": val, "chosen": best}
    kept += [{**r, "method": base} for r in group if r["weight"] == best]
  return kept, chosen


# ------------------------------------------------------------------------------------------------ table
def comparison_table(rows: list[dict], order: list[str], metric: str = "test_accuracy") -> list[dict]:
  """One entry per row of the report: mean, std over runs, a 95% interval over folds of the per-fold means
  (clipped to the metric's range [0, 1]), and for the students the fold-aware difference to the control (Holm
  over the distillation methods) and to the video-only student. From fewer than `stats.MIN_FOLDS` folds the
  entries keep means and counts only (`"inference": False`): no interval, p-value or power."""
  control, video = methods_lib.CONTROL, methods_lib.VIDEO_ONLY
  students = [m for m in order if m not in (TEACHER, CEILING)]
  distill = [m for m in students if m not in (control, video)]
  vs_control = stats_lib.compare(rows, "method", control, metric, distill, CONFIDENCE)
  video_vs_control = stats_lib.compare(rows, "method", control, metric, [video], CONFIDENCE)
  vs_video = stats_lib.compare(rows, "method", video, metric, distill + [control], CONFIDENCE)
  table = []
  for name in order:
    group = [r for r in rows if r["method"] == name and metric in r]
    if not group:
      continue
    mean, std = metrics_lib.mean_std([r[metric] for r in group])
    fold_means = {}
    for r in group:
      fold_means.setdefault(r["fold"], []).append(r[metric])
    ci = stats_lib.fold_t_interval([np.mean(v) for v in fold_means.values()], CONFIDENCE)
    inference = stats_lib.supports_inference(len(fold_means))
    entry = {"method": name, "n": len(group), "folds": len(fold_means), "mean": mean, "std": std,
             "ci_low": max(ci["diff_low"], 0.0) if inference else float("nan"),
             "ci_high": min(ci["diff_high"], 1.0) if inference else float("nan"), "inference": inference}
    if name in vs_control:
      entry["vs_control"] = _means_only(vs_control[name])
    elif name == video:
      entry["vs_control"] = _means_only(video_vs_control.get(video))
    if name in vs_video:
      entry["vs_video_only"] = _means_only(vs_video[name])
    table.append(entry)
  return table


def _means_only(c: dict | None) -> dict | None:
  """A comparison as reported: whole from enough folds, else its mean difference and counts alone."""
  if c is None or stats_lib.supports_inference(c["folds"]):
    return c
  return {"diff": c["diff"], "folds": c["folds"], "pairs": c["pairs"]}


def _fmt_diff(c: dict | None, with_p: bool = True) -> str:
  if not c or not np.isfinite(c.get("diff", np.nan)):
    return ""
  if "diff_low" not in c:  # too few folds for an interval: the mean difference alone
    return f"{c['diff']:+.3f}"
  text = f"{c['diff']:+.3f} [{c['diff_low']:+.3f}, {c['diff_high']:+.3f}]"
  if with_p:
    text += f", p={c['p']:.3f}"
  return text


def format_table(table: list[dict], timing: dict[str, dict[str, float]]) -> str:
  if not all(e.get("inference", True) for e in table):
    return _format_means_table(table, timing)
  header = ["row", "test accuracy mean +- std", "95% CI over folds", "runs", "diff vs task_only [95% CI], p",
            "Holm p", "diff vs video_only [95% CI]", "wall s (compile s)"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for e in table:
    c = e.get("vs_control")
    holm = f"{c['p_holm']:.3f}" if c and "p_holm" in c and np.isfinite(c["p_holm"]) else ""
    t = timing.get(e["method"])
    wall = f"{t['wall_s']:.0f} ({t['compile_s']:.0f})" if t else ""
    lines.append("| " + " | ".join([
        e["method"], f"{e['mean']:.3f} +- {e['std']:.3f}", f"[{e['ci_low']:.3f}, {e['ci_high']:.3f}]",
        f"{e['n']} ({e['folds']} folds)",
        "control" if e["method"] == methods_lib.CONTROL else _fmt_diff(c),
        holm, _fmt_diff(e.get("vs_video_only"), with_p=False), wall]) + " |")
  return "\n".join(lines)


def _format_means_table(table: list[dict], timing: dict[str, dict[str, float]]) -> str:
  """The table from too few folds for inference: means, std over runs and the mean differences, nothing else."""
  header = ["row", "test accuracy mean +- std", "runs", "mean diff vs task_only", "mean diff vs video_only",
            "wall s (compile s)"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for e in table:
    t = timing.get(e["method"])
    lines.append("| " + " | ".join([
        e["method"], f"{e['mean']:.3f} +- {e['std']:.3f}", f"{e['n']} ({e['folds']} folds)",
        "control" if e["method"] == methods_lib.CONTROL else _fmt_diff(e.get("vs_control")),
        _fmt_diff(e.get("vs_video_only")), f"{t['wall_s']:.0f} ({t['compile_s']:.0f})" if t else ""]) + " |")
  return "\n".join(lines)


def method_timing(root: str, full: bool) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
  """Per row: the summed wall and compile seconds of its student runs (all folds and seeds); and the
  teacher phase's (teachers and T-Nets of every fold)."""
  records_by_run = timing_lib.read_timing(root)
  per_method: dict[str, dict[str, float]] = {}
  teachers = {"wall_s": 0.0, "compile_s": 0.0}
  for (phase, run), t in records_by_run.items():
    if phase == "teachers":
      teachers["wall_s"] += t["wall_s"]
      teachers["compile_s"] += t["compile_s"]
      continue
    method = methods_lib.base_name(records.parse_run_name(run).get("method", run))
    entry = per_method.setdefault(method, {"wall_s": 0.0, "compile_s": 0.0})
    entry["wall_s"] += t["wall_s"]
    entry["compile_s"] += t["compile_s"]
  per_method[TEACHER] = teachers
  return per_method, teachers


# ---------------------------------------------------------------------------------------------- figures
def _similarity_embeddings(root: str, context: Context, fold: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """({panel label: member-0 embeddings}, labels) on the first test batch of `fold`, samples sorted by label:
  the teacher, the same-architecture student without distillation and with PKDOT."""
  from pkdot_jax.train import checkpoint, input as input_lib, parallel

  info = read_demo_json(root)
  full = info["mode"] == "all"

  def run_dir(method):
    return records.run_dir(root, records.run_name({"method": _run_method(method, full), "data.fold": fold}))

  sweep_config = sweep_lib.load_config(info["config"])
  pkdot_config = records.read_dict(records.config_path(run_dir("pkdot")))
  config = sweep_lib.apply_overrides(sweep_config, {"method": "pkdot", "data.fold": fold,
                                                    "seeds": tuple(pkdot_config["seeds"])})
  mesh = parallel.make_mesh(config.get("num_devices"))
  data = input_lib.load(config, context.datasets)
  local = next(iter(data.eval_batches("test", config.eval_batch_size)))
  mask = local["mask"].astype(bool)
  order = np.argsort(local["label"][mask], kind="stable")
  batch = parallel.global_batch({k: v for k, v in local.items() if v.dtype.kind not in "OUS"}, mesh)

  teacher_vars = checkpoint.load_variables(records.best_dir(pkdot_config["teacher_workdir"], "teacher"))
  embeddings = {TEACHER: _member0_embedding("teacher", config, teacher_vars, batch, context)[mask][order]}
  for method, label in ((methods_lib.CONTROL, "student, task loss only"), ("pkdot", "student with PKDOT")):
    method_config = sweep_lib.apply_overrides(config, {"method": method})
    student_vars = checkpoint.load_variables(records.best_dir(run_dir(method), "student"))
    embeddings[label] = _member0_embedding("student", method_config, student_vars, batch, context)[mask][order]
  return embeddings, local["label"][mask][order]


def similarity_figure(root: str, path: str, context: Context, fold: int = 0) -> dict[str, float]:
  """Teacher vs student cosine-similarity matrices on a test batch of `fold` (the first seed), samples ordered
  by label: the same-architecture student without distillation and with PKDOT; returns each student's PKDOT
  divergence to the teacher."""
  from pkdot_jax import losses

  embeddings, labels = _similarity_embeddings(root, context, fold)
  sims = {label: np.asarray(losses.cosine_similarity_matrix(e, e)) for label, e in embeddings.items()}
  titles, divergences = {TEACHER: TEACHER}, {}
  for label, embedding in embeddings.items():
    if label != TEACHER:
      k = min(8, len(sims[label]) - 1)
      divergences[label] = float(jax.jit(losses.pkdot, static_argnames="k")(embedding, embeddings[TEACHER], k=k))
      titles[label] = f"{label}\nPKDOT divergence to the teacher: {divergences[label]:.4f}"
  plots.similarity_matrices(
      path, sims, labels, titles,
      f"fold {fold}, seed {SEEDS[0]}, first test batch ({len(labels)} clips); each panel's colour scale "
      "spans the 1st-99th percentile of its off-diagonal values")
  return divergences


def _member0_embedding(stage: str, config, variables, batch, context: Context) -> np.ndarray:
  """The first member's embeddings; reuses the eval program the runs compiled into `context`."""
  from pkdot_jax.train import evaluation

  vmapped = len(config.seeds) > 1
  outputs = evaluation.eval_program(stage, config, vmapped, context.programs)(variables, None, batch)
  return np.asarray(outputs["embedding"][0] if vmapped else outputs["embedding"])


# ------------------------------------------------------------------------------------------------ report
def read_demo_json(root: str) -> dict[str, Any]:
  return records.read_dict(records.demo_file(root, "demo"))


def is_demo(root: str) -> bool:
  return os.path.exists(records.demo_file(root, "demo"))


def _report_figures(root: str, out_dir: str, info: dict[str, Any], table: list[dict], context) -> dict:
  """methods.png, learning_curves.png and similarity.png of a demo report; returns the PKDOT divergences."""
  full, methods = info["mode"] == "all", list(info["methods"])
  plots.methods_plot(os.path.join(out_dir, "methods.png"), table, chance=0.5,
                     references=(TEACHER, CEILING), controls=(methods_lib.VIDEO_ONLY, methods_lib.CONTROL),
                     interval=f"95% CI over the {len(info['folds'])} folds (t on per-fold means)"
                     if stats_lib.supports_inference(len(info["folds"])) else
                     f"none ({len(info['folds'])} folds, fewer than {stats_lib.MIN_FOLDS})")
  curve_split = "val" if full else "test"
  run_dirs = {m: sorted(glob.glob(records.run_dir(root, records.run_name(
      {"method": _run_method(m, full), "data.fold": 0}).replace("data.fold=0", "data.fold=*")))) for m in methods}
  plots.learning_curves(
      os.path.join(out_dir, "learning_curves.png"),
      {m: results_lib.epoch_curve(dirs, "accuracy", curve_split) for m, dirs in run_dirs.items()}, "accuracy",
      split=curve_split,
      title=f"{curve_split} accuracy per epoch, mean over {len(info['folds'])} folds x {len(info['seeds'])} seeds"
            + (" x weights" if full else ""))
  divergences = {}
  if "pkdot" in methods:
    divergences = similarity_figure(root, os.path.join(out_dir, "similarity.png"), context or Context())
  return divergences


SMOKE_NOTE = ("**Quick run: a smoke test of the pipeline, not an experiment.** Tiny data and 2-3 epochs per stage "
               "are too few steps to learn (its rows sit near chance); it checks that every stage runs and the "
               "report builds. `pkdot demo` is the comparison.")


def _design_lines(info: dict[str, Any], distill: list[dict]) -> list[str]:
  """The title, the smoke-run note, the design (folds, seeds, what each comparison is) and the selection."""
  full, folds, seeds = info["mode"] == "all", info["folds"], info["seeds"]
  method = (f"a 95% Student-t interval and a two-sided t-test over the {len(folds)} per-fold means "
            f"({len(folds) - 1} df); Holm's correction over the {len(distill)} distillation methods"
            if stats_lib.supports_inference(len(folds))
            else f"with {len(folds)} folds (fewer than {stats_lib.MIN_FOLDS}) no interval, p-value or power is "
            "computed: the table shows means and the number of runs only")
  return [
      f"# pkdot-jax demo{' (full comparison)' if full else ' (quick smoke run)' if info['mode'] == 'quick' else ''}:"
      " distillation into a video-only student on the synthetic dataset", "",
      *([SMOKE_NOTE, ""] if info["mode"] == "quick" else []),
      f"Binary task, {len(folds)} subject-disjoint folds x {len(seeds)} seeds ({len(folds) * len(seeds)} "
      f"fold x seed pairs per student row). 'diff vs task_only' is the primary comparison: the same T-Net + fusion "
      f"student trained with the task loss only. Per fold, the mean over seeds of the paired differences (same "
      f"fold and seed: same teacher member, same data order); {method}. 'diff vs video_only' is computed the same "
      f"way. The teacher sees video + physio; the "
      f"students see video only at test time; the video ceiling is a ridge probe on hand-made video features "
      f"fitted on the same training subjects of the same folds.",
      "",
      ("Selection: each stage trains a fixed number of epochs and keeps the last (no validation split); the test "
       "split is scored after every epoch only for the learning curves." if not full else
       "Selection: 20% of each fold's training subjects are held out for validation; every member keeps its best "
       "validation epoch, and per method the distillation weight with the best mean validation accuracy over all "
       "folds x seeds is reported (chosen weights below)."),
      ""]


def _power_lines(distill: list[dict], inference: bool) -> list[str]:
  """The smallest difference to the control each method's test detects with 80% power (none from few folds)."""
  if not inference:
    return []
  m = max(len(distill), 1)
  power = []
  for e in distill:
    c = e["vs_control"]
    if "sd_folds" in c:  # too few folds: no power either
      power.append(f"{e['method']}: {stats_lib.detectable_effect(c['sd_folds'], c['folds'], 0.05 / m, 0.8):.3f}")
  return [f"Smallest difference to the control detectable with 80% power at the Holm first-step level "
          f"0.05/{m} (from each method's sd of per-fold differences): " + ", ".join(power) + ".", ""]


def _wall_line(info: dict[str, Any], timing: dict, teachers: dict) -> str:
  """The demo's wall time, the teacher phase's, the compile total and what the table's time column means."""
  wall = info.get("wall_seconds")
  total_compile = sum(t["compile_s"] for t in timing.values())
  return ((f"Wall time {wall:.0f} s{' (the last, resumed invocation)' if info.get('resumed') else ''} for data, "
           "ceiling, teachers, T-Nets and students (building this report adds seconds)" if wall else
           "Wall time: not recorded") +
          f"; teachers + T-Nets {teachers['wall_s']:.0f} s ({teachers['compile_s']:.0f} s compile); "
          f"compile total {total_compile:.0f} s. 'wall s' is the summed wall time of a row's student runs over all "
          "folds (seeds run one after another on a CPU); 'compile s' is the part of it that jax spent tracing, "
          "lowering and compiling (jax.monitoring compile events; loading from a warm persistent cache counts "
          "instead). The shared T-Net + fusion student program compiles in the first row that uses it.")


def _chosen_lines(chosen: dict) -> list[str]:
  """The full comparison's chosen distillation weights, with every weight's mean validation accuracy."""
  if not chosen:
    return []
  lines = ["Chosen distillation weights (mean validation accuracy per weight):", ""]
  for name, c in chosen.items():
    weights = ", ".join(f"{w:g}: {v:.3f}" for w, v in c["weights"].items())
    lines.append(f"- {name}: **{c['chosen']:g}** ({weights})")
  return lines + [""]


def report_text(root: str, info: dict[str, Any], table: list[dict], timing: dict, teachers: dict, chosen: dict,
                divergences: dict) -> str:
  """report.md of a demo: design, provenance, the table, power, wall times, chosen weights, the figures."""
  distill = [e for e in table if "vs_control" in e and e["method"] != methods_lib.VIDEO_ONLY]
  lines = [
      *_design_lines(info, distill),
      "\n".join(tables.provenance_lines(results_lib.provenance(root))), "",
      format_table(table, timing), "",
      *_power_lines(distill, stats_lib.supports_inference(len(info["folds"]))),
      _wall_line(info, timing, teachers), "",
      *_chosen_lines(chosen),
      "Cosine-similarity structure on a fold-0 test batch (similarity.png), PKDOT divergence to the teacher: "
      + "; ".join(f"{k} {v:.4f}" for k, v in divergences.items()) + ".", "",
      "This is data we designed so that the privileged signal carries the label more strongly than the video; "
      "the numbers demonstrate the pipeline, they are not a reproduction of the paper's Biovid results.", "",
      "![test accuracy per row](methods.png)", "", "![learning curves](learning_curves.png)"]
  if divergences:
    lines += ["", "![cosine-similarity matrices of a test batch](similarity.png)"]
  return "\n".join(lines)


def build_report(root: str, context: Context | None = None) -> str:
  """Tables, plots and report.md of a demo workdir under <root>/report/, from its files only."""
  info = read_demo_json(root)
  full = info["mode"] == "all"
  methods = list(info["methods"])
  out_dir = records.demo_file(root, "report")
  os.makedirs(out_dir, exist_ok=True)
  rows = [r for r in results_lib.collect(root) if "method" in r]
  chosen = {}
  if full:
    rows, chosen = select_weights(rows)
  rows = [r for r in rows if r["method"] in methods]
  references = teacher_rows(root) + ceiling_rows(root, info["config"], info["folds"])
  all_rows = references + rows
  order = [TEACHER, CEILING, *methods]
  table = comparison_table(all_rows, order)
  timing, teachers = method_timing(root, full)
  tables.write_csv(os.path.join(out_dir, "results.csv"), all_rows)
  divergences = _report_figures(root, out_dir, info, table, context)
  text = report_text(root, info, table, timing, teachers, chosen, divergences)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump({"wall_seconds": info.get("wall_seconds"), "table": table, "timing": timing, "chosen_weights": chosen,
               "divergences": divergences}, f, indent=2, default=float)
  return text


def show_report(root: str, context: Context | None = None) -> str:
  """Builds the demo report of `root` (build_report), prints it and where it is; returns its text."""
  text = build_report(root, context)
  print(text)
  print(f"\nreport: {os.path.join(root, 'report', 'report.md')}")
  return text


def main(workdir: str = "runs/demo", quick: bool = False,
         methods: tuple[str, ...] | None = None, full: bool = False, context: Context | None = None) -> str:
  """Runs the demo into `workdir` and returns the report's text; `context`: compiled programs and caches
  (one for the whole demo when None)."""
  t0 = time.time()
  context = context or Context()
  if methods is None:
    methods = methods_lib.ALL_METHODS if full else methods_lib.DEMO_METHODS
  sweep = demo_sweep(quick, tuple(methods), full)
  os.makedirs(workdir, exist_ok=True)
  info = {"mode": "quick" if quick else "all" if full else "default", "config": sweep["config"],
          "methods": list(methods), "folds": sweep["grid"]["data.fold"], "seeds": list(SEEDS)}
  previous = read_demo_json(workdir) if is_demo(workdir) else {}
  records.write_json(records.demo_file(workdir, "demo"), {**info, "wall_seconds": previous.get("wall_seconds")},
                     indent=2)
  ceiling_rows(workdir, sweep["config"], info["folds"])
  for spec, phase in ((teacher_sweep(sweep), "teachers"), (sweep, "students")):
    with timing_lib.RunTimer(workdir, phase) as timer:
      sweep_lib.run_sweep(spec, workdir, after_run=timer, context=context)
  wall = time.time() - t0
  # A resumed demo records the last invocation's time.
  records.write_json(records.demo_file(workdir, "demo"), {**info, "wall_seconds": wall, "resumed": bool(previous)},
                     indent=2)
  return show_report(workdir, context)
