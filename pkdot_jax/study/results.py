"""The results of finished runs, read back from their directories (never from memory).

One row per (run, member) of a sweep root's finished student stages, the failed runs a sweep recorded, the
provenance of a root (hardware, versions, command, seeds), per-epoch curves and the training subjects of a run.
Above stats / tables / plots, beside sweep.py, below the studies (demo, protocols, report).
"""

from __future__ import annotations

import glob
import os
from typing import Any

import numpy as np

from pkdot_jax.train import loop, records


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


def failed_runs(root: str) -> dict[str, str]:
  """{run name: error} of the runs a sweep recorded as failed (`<run>/failed.json`): left out of the tables,
  and named in every report so that nothing is dropped silently."""
  return {os.path.basename(os.path.dirname(path)): records.read_dict(path).get("error", "(no message recorded)")
          for path in sorted(glob.glob(records.failed_path(records.run_dir(root, "*"))))}


def provenance(root: str) -> dict[str, Any]:
  """Hardware, versions, command and seeds from the first run_info.json found under root."""
  infos = sorted(glob.glob(os.path.join(root, "**", records.RUN_INFO), recursive=True))
  info = (records.read_json(infos[0]) or [{}])[0] if infos else {}
  sweep = records.read_dict(records.sweep_path(root), default={})
  return {"hardware": info.get("hardware"), "versions": info.get("versions"), "git": info.get("git_revision"),
          "command": sweep.get("command") or info.get("command"), "config": sweep.get("config"),
          "base": sweep.get("base"), "seeds": (info.get("config") or {}).get("seeds"),
          "contrasts": sweep.get("contrasts") or {}, "failed": failed_runs(root)}


def epoch_curve(run_dirs: str | list[str], metric: str, split: str) -> dict[int, float]:
  """{epoch: mean of `split` `metric`} of the student stage over its members and over the run directories given
  (a path or a list of paths); empty when none has such records."""
  per_epoch: dict[int, list[float]] = {}
  for run_dir in [run_dirs] if isinstance(run_dirs, str) else run_dirs:
    for r in loop.read_metrics(run_dir):
      if r["stage"] == "student" and split in r:
        per_epoch.setdefault(r["epoch"], []).extend(m[metric] for m in r[split])
  return {e: float(np.mean(per_epoch[e])) for e in sorted(per_epoch)}


def training_subjects(run_dir: str) -> int:
  """Training subjects of a run's fold, from its config (the folds the loader builds)."""
  from pkdot_jax.data import folds as folds_lib

  config = records.read_dict(records.config_path(run_dir))
  d = config["data"]
  overrides = d.get("overrides") or {}
  subjects = np.repeat(np.arange(int(overrides.get("num_subjects", 20))), int(overrides.get("samples_per_subject", 30)))
  train = folds_lib.subject_folds(subjects, int(d["num_folds"]), float(d["val_fraction"]), int(d["fold_seed"]))
  return int(np.unique(subjects[train[int(d["fold"])][0]]).size)


def add_training_subjects(root: str, rows: list[dict[str, Any]]) -> None:
  """Sets row["training_subjects"] (read from each run's config) on every row."""
  sizes: dict[str, int] = {}
  for r in rows:
    if r["run"] not in sizes:
      sizes[r["run"]] = training_subjects(records.run_dir(root, r["run"]))
    r["training_subjects"] = sizes[r["run"]]
