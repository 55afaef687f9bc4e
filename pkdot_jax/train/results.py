"""What a stage reports: each epoch's record (validation and test metrics per member, the best epoch so far),
and at its end its outputs (`best/`, result.json). Every record is written through `records.py`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import evaluation, jobs, parallel, records
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train import watch as watch_lib
from pkdot_jax.train.runs import Run
from pkdot_jax.train.state import TrainState
from pkdot_jax.train.tracking import Best, EpochLoss, scores


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """metrics.jsonl records, the last one kept per (stage, epoch) (a resumed epoch may appear twice)."""
  return records.read_metrics(workdir, stages_lib.STAGE_ORDER)


def end_of_epoch(run: Run, state: TrainState, best: Best, step: int, epoch_loss: EpochLoss, eval_fn,
                 watch: watch_lib.StageWatch) -> None:
  """Evaluates every member on validation (and test), updates the best and appends the epoch's record (with
  `train_terms`: per step term, its mean over the epoch's steps this process ran, per member)."""
  members, config = run.members, run.config
  epoch = step // run.steps_per_epoch
  record = {"stage": run.stage.name, "epoch": epoch, "step": step, "members": members.names(),
            "train_loss": epoch_loss.mean(), "train_terms": watch.epoch_terms()}
  for split in ("val", "test") if config.test_every_epoch else ("val",):
    if len(getattr(run.data, split)):
      record[split] = evaluation.evaluate(eval_fn, state.variables(), state.frozen, run.data, split, config,
                                          run.mesh, len(members), members.vmapped)
  metric, mode = run.stage.select(config)
  best.update(scores(record, metric, mode, len(members)), epoch, state.variables(), members.vmapped)
  record["best_epoch"] = best.epoch.tolist()
  if jobs.is_writer():
    records.append_jsonl(run.log_path, record)
  watch.epoch(record, metric)


def write_outputs(run: Run, state: TrainState, best: Best, eval_fn, seconds: float) -> dict[str, Any]:
  """The stage's outputs: `best/` (the best variables, or the last ones without a validation split), the test
  metrics of the selected variables when not scored every epoch, and result.json, written last."""
  final_vars = best.variables if np.all(best.epoch > 0) else state.variables()
  final_test = None
  if not run.config.test_every_epoch and len(run.data.test):  # the selected variables, scored once
    final_test = evaluation.evaluate(eval_fn, final_vars, state.frozen, run.data, "test", run.config, run.mesh,
                                     len(run.members), run.members.vmapped)
  os.makedirs(run.stage_dir, exist_ok=True)
  ckpt_lib.save_variables(records.best_dir(run.workdir, run.stage.name), parallel.to_host(final_vars))
  result_path = records.result_path(run.workdir, run.stage.name)
  if jobs.is_writer():
    records.write_json(result_path, stage_result(run, best, seconds, final_test), indent=2)
  jobs.sync(f"{run.stage_dir} done")
  return records.read_dict(result_path)


def stage_result(run: Run, best: Best, seconds: float, final_test=None) -> dict[str, Any]:
  """Per member: the test metrics at the best validation epoch (the number a paper table reports); from
  `final_test` when the test split was scored only once, with the selected variables."""
  epochs = [r for r in read_metrics(run.workdir) if r["stage"] == run.stage.name]
  by_epoch = {r["epoch"]: r for r in epochs}
  members = run.members
  per_member = []
  for m, name in enumerate(members.names()):
    epoch = int(best.epoch[m]) if best.epoch[m] > 0 else (epochs[-1]["epoch"] if epochs else 0)
    record = by_epoch.get(epoch, {})
    per_member.append({"member": name, "seed": members.seeds[m], "weight": members.weights[m],
                       "best_epoch": epoch,
                       "val": record.get("val", [None] * len(members))[m] if "val" in record else None,
                       "test": final_test[m] if final_test is not None else
                       record.get("test", [None] * len(members))[m] if "test" in record else None})
  return {"stage": run.stage.name, "select_metric": run.stage.select(run.config)[0], "seconds": seconds,
          "members": per_member}
