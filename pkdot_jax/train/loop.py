"""The training loop: `run_stage` trains one stage (declared in `stages.py`) in a workdir; `run_pipeline` runs
the stages of a config in order.

Several *members* (seeds, or distillation weights) of one config train side by side (`members.py`). The
compiled programs, saved variables and in-memory data live in the caller's `programs.Context`, so the folds,
seeds and methods of a sweep trace and compile each program once. Runs are resumable: re-running the same
command restores the latest checkpoint, skips the batches already consumed in the current epoch (data order is
a function of seed and epoch, step keys of seed and step), and continues to the same final parameters as an
uninterrupted run. Multi-process jobs run the same code in every process (`jobs.py`).

The parts: `runs.py` sets a stage up, `initial.py` makes its first state (grafts, weight files, checkpoint),
`tracking.py` keeps the best epoch and the epoch's losses, `results.py` writes the epoch records and the
stage's outputs, `checks.py` checks a run before anything is written. This module runs the epochs.

Workdir layout (one run = one config = one fold):
  config.json, run_info.json        the config; versions, devices, git revision
  metrics.jsonl                     one record per stage and epoch (train loss and the mean of every step term,
                                    val and test metrics per member; test only in result.json when
                                    config.test_every_epoch is False)
  <stage>/tensorboard/              TensorBoard event files: per step loss terms, per epoch val / test (summaries.py)
  <stage>/checkpoints/              periodic checkpoints (resume points)
  <stage>/best/                     the members' variables at their best validation epoch (next stage's input)
  <stage>/checksums/                checksum manifests of the checkpoints and of best/, verified before a restore
  <stage>/result.json               written last: the stage is done and is skipped on re-runs (if best/ verifies)
The paths, the JSON records and the journal are `records.py`'s.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax import console
from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import evaluation, jobs, parallel, preemption, records, runinfo, runs
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train import watch as watch_lib
from pkdot_jax.train.checks import check_run, validate_config
from pkdot_jax.train.initial import restore_or_init
from pkdot_jax.train.members import Members
from pkdot_jax.train.programs import Context
from pkdot_jax.train.results import end_of_epoch, read_metrics, write_outputs
from pkdot_jax.train.state import TrainState, learning_rate
from pkdot_jax.train.tracking import Best, EpochLoss, checkpoint_tree

__all__ = ["Members", "NonFiniteLossError", "STAGES", "TEACHER_STAGES", "check_run", "read_metrics",
           "run_pipeline", "run_stage", "stage_done", "validate_config"]

STAGES = stages_lib.STAGE_ORDER
TEACHER_STAGES = stages_lib.TEACHER_STAGES
stage_done = ckpt_lib.stage_done


class NonFiniteLossError(FloatingPointError):
  pass


# ---------------------------------------------------------------------------------------------- the stage
def run_stage(stage: str, config, workdir: str, *, teacher_dir: str | None = None, mesh=None,
              stop_after_steps: int | None = None, context: Context | None = None) -> dict[str, Any]:
  """Trains one stage to completion (or resumes it) and returns its result record.

  `context`: the caller's compiled programs and caches (a fresh one when None). `stop_after_steps` ends the run
  early after a checkpoint at that step, as if killed (used by the resume tests).
  """
  if ckpt_lib.stage_finished(workdir, stage, writer=jobs.is_writer()):
    console.info(f"{stage}: done, skipped ({records.result_path(workdir, stage)} exists)")
    return records.read_dict(records.result_path(workdir, stage))
  # Signals stop training cleanly (`preemption`); the workdir is this job's alone (`locks`): its start-up
  # clean-up (orbax's temporary directories) and writes never touch another live process's files.
  with preemption.handling(), jobs.claim(workdir, "workdir", wait=False):
    signum = preemption.agreed()
    if signum:
      raise preemption.Preempted(signum, f"stopped by {preemption.name(signum)} before stage {stage} started; "
                                         f"run the same command again to continue")
    return _train_stage(stage, config, workdir, teacher_dir, mesh, stop_after_steps, context)


def _train_stage(stage: str, config, workdir: str, teacher_dir: str | None, mesh, stop_after_steps: int | None,
                 context: Context | None) -> dict[str, Any]:
  if jobs.is_writer():
    records.repair_jsonl(records.metrics_path(workdir))  # a line cut short by a crash, set aside before training
  run = runs.setup(stage, config, workdir, teacher_dir or workdir, mesh, context or Context())
  train_step = runs.train_step(run)
  eval_fn = evaluation.eval_program(stage, config, run.members.vmapped, run.context.programs)
  checkpointer = ckpt_lib.Checkpointer(run.stage_dir, max_to_keep=config.checkpoint.max_to_keep,
                                       min_interval_secs=config.checkpoint.min_interval_secs)
  state, best, epoch_loss, step = restore_or_init(run, checkpointer)
  cache = runs.teacher_cache(run)
  watch = watch_lib.StageWatch(stage, run.stage_dir, run.members.names(), run.total_steps, run.steps_per_epoch,
                               step, learning_rate(run.opt_config), jobs.is_writer(), config.progress)
  t_stage = time.time()
  try:
    while step < run.total_steps:
      state, step, stopped = _train_epoch(run, state, step, train_step, cache, checkpointer, best, epoch_loss,
                                          watch, stop_after_steps)
      if stopped:
        checkpointer.wait()
        watch.close(f"stopped at step {step} of {run.total_steps} (checkpoint saved)")
        return {"stopped_at": step}
      end_of_epoch(run, state, best, step, epoch_loss, eval_fn, watch)
      epoch_loss = EpochLoss.empty(len(run.members))
      checkpointer.save(step, checkpoint_tree(state, best, epoch_loss))
      signum = preemption.agreed() if step < run.total_steps else None  # (a finished stage writes its outputs)
      if signum:
        _stop(signum, run, checkpointer, step, checkpoint_tree(state, best, epoch_loss))
  finally:
    watch.close()  # the event file is flushed whatever happens; a second close does nothing
  checkpointer.wait()
  result = write_outputs(run, state, best, eval_fn, time.time() - t_stage)
  checkpointer.close()
  console.info(f"{stage}: trained in {time.time() - t_stage:.1f} s (best epoch per member: "
               f"{', '.join(str(m['best_epoch']) for m in result['members'])})")
  return result


# ---------------------------------------------------------------------------------------------- the epochs
def _train_epoch(run: runs.Run, state: TrainState, step: int, train_step, cache, checkpointer, best: Best,
                 epoch_loss: EpochLoss, watch: watch_lib.StageWatch,
                 stop_after_steps: int | None) -> tuple[TrainState, int, bool]:
  """Trains from `step` to the end of its epoch (or to `stop_after_steps`), adding the step losses to
  `epoch_loss`; returns (state, step, stopped early). Step metrics reach the host (and `watch`) every
  `log_every` steps. A signal (`preemption`) stops it after the step in progress, with a checkpoint of
  that step."""
  config, members = run.config, run.members
  epoch = step // run.steps_per_epoch
  member_keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in members.seeds])
  member_keys = member_keys if members.vmapped else member_keys[0]
  every = int(config.checkpoint.every_steps) or run.steps_per_epoch
  skip = step - epoch * run.steps_per_epoch
  single_process = jax.process_count() == 1
  window: list[Any] = []
  for local_batch in run.data.train_batches(epoch, members.seeds, config.batch_size, skip=skip):
    if cache is not None:
      local_batch = cache.add_to(local_batch)
    state, step_metrics = train_step(state, parallel.global_batch(local_batch, run.mesh,
                                                                  member_axis=members.vmapped), member_keys)
    step += 1
    window.append(step_metrics)
    end, save = step % run.steps_per_epoch == 0, step % every == 0 and step % run.steps_per_epoch != 0
    stop_now = stop_after_steps is not None and step >= stop_after_steps
    # One process reads its flag every step (no device work); a job agrees on it where its processes flush.
    signal = preemption.requested() if single_process else None
    if len(window) >= config.log_every or end or save or stop_now or signal:
      _flush(window, step, run, checkpointer, epoch_loss, watch)
      window = []
      signal = signal if single_process else preemption.agreed()
    if signal and not end:  # at an epoch's end, run_stage stops once the epoch is evaluated and recorded
      _stop(signal, run, checkpointer, step, checkpoint_tree(state, best, epoch_loss))
    if save:
      checkpointer.save(step, checkpoint_tree(state, best, epoch_loss))
    if stop_now:
      checkpointer.save(step, checkpoint_tree(state, best, epoch_loss), force=True)
      return state, step, True
    if end:
      break
  return state, step, False


def _flush(window, step: int, run: runs.Run, checkpointer, epoch_loss: EpochLoss,
           watch: watch_lib.StageWatch) -> None:
  """Moves a window of step metrics to the host (stopping at a non-finite one), adds its losses to the epoch's
  and hands them to `watch` (event files, the epoch's terms, the progress bar)."""
  host = _check_window(window, step - len(window) + 1, run.stage.name, checkpointer)
  for h in host:
    epoch_loss.add(h["loss"])
  watch.window(step - len(window) + 1, host, run.config.batch_size * len(run.members) * len(window))


def _stop(signum: int, run: runs.Run, checkpointer, step: int, tree: dict[str, Any]) -> None:
  """After a signal: a checkpoint of `step` (unless the latest already is), every write finished, then
  `preemption.Preempted` naming the step and where it was saved."""
  checkpointer.wait()
  if checkpointer.latest_step() != step:
    checkpointer.save(step, tree, force=True)
    checkpointer.wait()
  raise preemption.Preempted(
      signum, f"stopped by {preemption.name(signum)}: {run.stage.name} step {step} of {run.total_steps} saved in "
              f"{checkpointer.latest.directory}; run the same command again to resume from it")


def _check_window(window, first_step: int, stage: str, checkpointer) -> list[dict[str, np.ndarray]]:
  """Moves a window of step metrics to the host; stops at the first non-finite step, naming the term."""
  host = [parallel.to_host(w) for w in window]
  for i, h in enumerate(host):
    if "finite" in h and not np.all(h["finite"] > 0):
      bad_terms = [k for k, v in h.items() if k != "finite" and not np.all(np.isfinite(v))]
      checkpointer.wait()
      last = checkpointer.latest_step()
      raise NonFiniteLossError(
          f"{stage}: non-finite loss at step {first_step + i} (terms: {', '.join(bad_terms) or 'gradient'}); "
          f"parameters were not updated with it and no further checkpoint is written. Last good checkpoint: "
          f"{'step ' + str(last) if last is not None else 'none'} in {checkpointer.latest.directory}")
  return host


# ------------------------------------------------------------------------------------------------ pipeline
def run_pipeline(config, workdir: str, stages: tuple[str, ...] | None = None, *,
                 context: Context | None = None, wait_for_workdir: bool = False,
                 wait_for_teacher: bool = True) -> dict[str, Any]:
  """Runs the stages in order (default: config.pipeline), each skipped if already done.

  Teacher-side stages run in `config.teacher_workdir` when set (shared by the runs of a sweep), the student in
  `workdir`. `context`: compiled programs and caches to share with other runs of this process. Nothing is
  written before the config has passed `check_run`.

  The workdir is claimed for the whole run (`locks`): one held by another live process raises locks.InUse
  naming it (or, `wait_for_workdir`, waits for it). A separate teacher directory is claimed while its config is
  checked and its stages run: one held by another process (another run of a sweep training the same teacher)
  is waited for, then its finished stages are skipped (`wait_for_teacher=False`: locks.InUse instead).
  """
  context = context or Context()
  stages = tuple(stages or config.pipeline)
  check_run(config, workdir, stages, context)
  teacher_dir = config.teacher_workdir or workdir
  with preemption.handling(), jobs.claim(workdir, "workdir", wait_for_workdir), contextlib.ExitStack() as teacher:
    ckpt_lib.check_or_write_config(workdir, config, write=jobs.is_writer())
    if jobs.is_writer():
      runinfo.write(workdir, config)
    if teacher_dir != workdir:
      teacher.enter_context(jobs.claim(teacher_dir, "teacher directory", wait_for_teacher))
      ckpt_lib.check_or_write_config(teacher_dir, config, drop=stages_lib.FIELDS.teacher_neutral,
                                     write=jobs.is_writer())
    jobs.sync(f"{workdir} config")
    results = {}
    for stage in stages:
      teacher_side = stages_lib.get(stage).teacher_side
      if not teacher_side:
        teacher.close()  # the teacher directory is only read from here on
      stage_workdir = teacher_dir if teacher_side else workdir
      results[stage] = run_stage(stage, config, stage_workdir, teacher_dir=teacher_dir, context=context)
  return results
