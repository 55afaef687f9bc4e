"""Ablation sweeps: a grid of config overrides, one workdir per run, resumable, shardable, aggregated.

A sweep file defines `get_sweep()` returning
  {"config": "NAME[:variant]" or a path,  # the experiment config
   "base": {"seeds": (0, 1, 2), ...},                   # overrides applied to every run
   "grid": {"method": [...], "distill.kwargs.k": [...], "data.fold": [0, 1, 2], ...},
   "contrasts": {"pkdot_plus_gd": "generalized_distillation", ...}}  # optional: method -> its own reference
Grid keys are dotted config paths, plus `method` (a preset of pkdot_jax/study/methods.py). Seeds and lists of
distillation weights are not grid axes: `seeds=(0, 1, 2)` or `distill.weight=(0.2, 0.6, 1.0)` in one run train
all members in one compiled program (vmap).

  pkdot sweep --sweep=experiments/sweeps/NAME.py --workdir=runs/NAME [--shard=i/n]

Runs that differ only in the distillation loss (method, its kwargs and weights), seed or fold share one
compiled student program: the sweep declares their losses to the `Programs` of its context
(`Programs.share_losses`) and each run selects its own (a switch inside the step). `"share_programs"` in the
sweep: "auto" (default) shares on CPUs and wherever runs have one member each (under vmap a switch computes
every branch), True / False force it. The report compares every method with the task_only control, and each
method named in `"contrasts"` also with its own reference (Holm over those contrasts).

Layout: <workdir>/runs/<run name>/ per run, <workdir>/teachers/<key>/ for teachers and T-Nets shared by all runs
whose teacher-side config is identical (the student-side fields do not change the teacher), and
<workdir>/summary.csv + summary.md + plots after aggregation. A finished run is skipped, an interrupted one
resumes from its checkpoints. `--shard=i/n` runs every n-th run starting at i (one process per GPU or cluster
task); run the aggregation (`pkdot report`) once all shards are done.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import os
import sys
import time
from typing import Any, Callable

import ml_collections

from pkdot_jax import errors
from pkdot_jax import configs as configs_lib
from pkdot_jax import console
from pkdot_jax.train import checkpoint, locks, loop, parallel, preemption, records, stages
from pkdot_jax.train.programs import Context
from pkdot_jax.study import methods as methods_lib


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`NAME[:variant]` (a built-in config) or `path/to/config.py[:variant]` -> get_config(variant)."""
  return configs_lib.load(spec)


def _freeze(value: Any) -> Any:
  if isinstance(value, list):
    return tuple(value)
  return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted-path overrides; `method` expands to its preset first."""
  config = copy.deepcopy(config)
  overrides = dict(overrides)
  if "method" in overrides:
    overrides = {**methods_lib.overrides(overrides.pop("method")), **overrides}
  for path, value in overrides.items():
    *parents, leaf = path.split(".")
    node = config
    for key in parents:
      if key not in node:
        raise errors.ConfigError(f"override {path!r}: config has no field {key!r}")
      node = node[key]
    if leaf not in node and path not in stages.FIELDS.optional \
        and not (isinstance(node, ml_collections.ConfigDict) and parents[-1:] == ["kwargs"]):
      raise errors.ConfigError(f"override {path!r}: config has no field {leaf!r}")
    value = ml_collections.ConfigDict(value) if isinstance(value, dict) else _freeze(value)
    if leaf in node and isinstance(value, tuple) and not isinstance(node[leaf], tuple):
      del node[leaf]  # a scalar field given a list of values (distill.weight: one member per value)
    node[leaf] = value
  return config


run_name = records.run_name  # the inverse, for the reports: records.parse_run_name


def expand(sweep: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
  """The runs of a sweep, in a fixed order: (name, overrides)."""
  grid = sweep.get("grid", {})
  keys = list(grid)
  runs = []
  for values in itertools.product(*(grid[k] for k in keys)):
    overrides = dict(zip(keys, values))
    runs.append((run_name(overrides), {**sweep.get("base", {}), **overrides}))
  names = [r[0] for r in runs]
  if len(set(names)) != len(names):
    raise errors.ConfigError("sweep grid has duplicate runs")
  return runs


def parse_shard(shard: str) -> tuple[int, int]:
  try:
    index, count = (int(x) for x in shard.split("/"))
  except ValueError:
    raise errors.UsageError(f"--shard must look like i/n (e.g. 0/4), got {shard!r}") from None
  if count < 1 or not 0 <= index < count:
    raise errors.UsageError(f"--shard {shard}: need 0 <= i < n")
  return index, count


def shard_runs(runs: list, shard: str) -> list:
  index, count = parse_shard(shard)
  return runs[index::count]


def teacher_key(config: ml_collections.ConfigDict) -> str:
  """Hash of the teacher-side config: runs with the same key share one teacher and T-Net."""
  tree = checkpoint.drop_fields(checkpoint.config_to_dict(config), stages.FIELDS.teacher_neutral)
  return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def _should_share(setting: Any, configs: list[ml_collections.ConfigDict]) -> bool:
  """"auto": share where a switch over the losses runs the selected one alone (`parallel.switch_runs_one_branch`:
  on CPUs, or when every run has a single member); True / False force it."""
  if setting != "auto":
    return bool(setting)
  return all(parallel.switch_runs_one_branch(len(loop.Members.from_config(c))) for c in configs)


def run_one(config: ml_collections.ConfigDict, run_dir: str, teachers_root: str,
            context: Context | None = None, wait: bool = True) -> dict[str, Any]:
  """Runs (or resumes, or skips) one run of a sweep; teacher stages live in the shared teacher dir. A run
  directory or teacher directory claimed by another process (another shard) is waited for, or, without
  `wait`, raises locks.InUse."""
  key = teacher_key(config)
  with config.unlocked():
    config.teacher_workdir = os.path.join(teachers_root, key)
  last_stage = tuple(config.pipeline)[-1]
  if checkpoint.stage_done(config.teacher_workdir if last_stage in loop.TEACHER_STAGES else run_dir, last_stage):
    return {}  # finished: not started again
  return loop.run_pipeline(config, run_dir, context=context, wait_for_workdir=wait, wait_for_teacher=wait)


def run_sweep(sweep: dict[str, Any], root: str, shard: str = "0/1",
              after_run: Callable[[str], None] | None = None, context: Context | None = None) -> list[str]:
  """Runs this shard's runs in one `Context` (compiled programs shared); returns the names of those that
  finished. A run whose loss turns non-finite is recorded in `<run>/failed.json` and the sweep goes on (the
  reports name it; a re-run tries it again). `after_run(name)` is called after each finished run (tests).

  Shards may run at the same time in one workdir: a run (or the teacher it needs) that another process holds is
  put off while this shard does its other runs, then waited for; one that the other process finished is then
  skipped. Several processes given the same shard share its runs that way."""
  context = context or Context()
  base = load_config(sweep["config"])
  all_runs = expand(sweep)
  configs = {name: apply_overrides(base, overrides) for name, overrides in all_runs}
  if _should_share(sweep.get("share_programs", "auto"), list(configs.values())):
    context.programs.share_losses(configs.values())  # the whole grid: every shard compiles the same program
  runs = shard_runs(all_runs, shard)
  records.write_json(records.sweep_path(root), {
      "config": sweep["config"], "base": sweep.get("base", {}), "grid": sweep.get("grid", {}),
      "contrasts": sweep.get("contrasts", {}), "command": " ".join(sys.argv)}, indent=2, default=str)
  from tqdm import tqdm

  # One bar over the runs with its ETA (the mean time of the runs so far; runs already finished skip fast, so
  # a resumed sweep's first estimates are optimistic). Per-run lines go through the bar's writer.
  progress = tqdm(total=len(runs), desc=sweep.get("desc", "runs"), unit="run", dynamic_ncols=True,
                  file=sys.stderr, disable=not (sweep.get("progress", True) and console.bars_enabled()))
  pending, put_off, done = [name for name, _ in runs], [], []
  with preemption.handling():  # a signal between runs stops the sweep at the next one's start
    while pending or put_off:
      wait = not pending  # first every run that is free, then those another process held, waiting for them
      name = (pending or put_off).pop(0)
      progress.set_postfix_str(name[:60])
      try:
        ran = _run_in_sweep(name, configs[name], root, context, wait)
      except locks.InUse as e:
        put_off.append(name)
        console.info(f"[sweep] {name}: {e.what} in use by {locks.describe(e.holder)}; coming back to it later")
        continue
      progress.update(1)
      if ran is None:
        continue
      done.append(name)
      if after_run is not None:
        after_run(name)
  progress.close()
  return done


def _run_in_sweep(name: str, config, root: str, context: Context, wait: bool) -> dict | None:
  """One run of `run_sweep`: its result (None: failed, recorded in failed.json)."""
  t0 = time.time()
  run_dir = records.run_dir(root, name)
  try:
    ran = run_one(config, run_dir, records.teachers_root(root), context, wait=wait)
  except loop.NonFiniteLossError as e:  # one diverged run does not stop the sweep; the reports name it
    records.write_json(records.failed_path(run_dir), {"error": str(e)}, indent=2)
    console.info(f"[sweep] {name}: FAILED ({e})", console.QUIET)
    return None
  with contextlib.suppress(FileNotFoundError):  # finished now (e.g. resumed after a fix)
    os.remove(records.failed_path(run_dir))
  console.info(f"[sweep] {name}: {'done' if ran else 'already finished, skipped'} ({time.time() - t0:.1f} s)")
  return ran


def main(sweep_path: str, root: str, shard: str = "0/1") -> bool:
  """Runs this shard of the sweep file's grid into `root`; True when the shard was the whole grid (its report
  can be built now), else says to build it once every shard is done."""
  sweep = configs_lib.load_module(sweep_path, "pkdot_sweep").get_sweep()
  run_sweep(sweep, root, shard)
  if parse_shard(shard)[1] == 1:
    return True
  print(f"[sweep] shard {shard} finished; once every shard is done run: pkdot report {root}")
  return False
