"""Checkpoints (orbax) and the run's identity (its config) in a workdir.

Layout of a stage's directory (config.json, the run's identity, sits in the workdir above):
  checkpoints/      periodic checkpoints, the latest `max_to_keep` kept (resume points); each also carries the
                    best-on-validation variables so far
  best/             written when the stage ends: the variables of the best validation epoch (next stage's input)

Orbax writes each checkpoint into a temporary directory and renames it into place when complete, so a crash
mid-save leaves the previous checkpoint as the latest usable one (the partial temporary directory is ignored on
restore and cleaned up by the next manager). Orbax checks no contents, so each finished checkpoint gets a
checksum manifest (`checksums.py`, in `<stage>/checksums/`), verified before a restore: a damaged latest
checkpoint is named and moved to `<stage>/damaged/`, and the run resumes from the previous one; a damaged
`best/` is an error naming the file.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from pkdot_jax import errors
from pkdot_jax.train import checksums, records, schema

# Fields that may change between a run and its resume without changing what the run computes.
RESUME_IGNORED_FIELDS = schema.paths(schema.RESUMABLE)
# Fields added after runs were saved: a saved config without one compares as if it held this value (the value
# that reproduces what those runs did), so their workdirs still resume.
ADDED_FIELDS = {"model.video.pretrained": "", "model.privileged_net.pretrained": "", "student_backbone": "finetune"}


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def config_to_dict(config) -> dict[str, Any]:
  """A JSON-able dict of an ml_collections ConfigDict (tuples become lists)."""
  return json.loads(config.to_json_best_effort() if hasattr(config, "to_json_best_effort") else json.dumps(config))


def drop_fields(tree: dict[str, Any], paths) -> dict[str, Any]:
  """A copy of a nested dict without the dotted `paths`."""
  tree = json.loads(json.dumps(tree))
  for path in paths:
    *parents, leaf = path.split(".")
    node = tree
    for key in parents:
      node = node.get(key, {})
    node.pop(leaf, None)
  return tree


def _loss_arguments(tree: dict[str, Any]) -> dict[str, Any]:
  """For the comparison on resume: `distill.kwargs` as the selected method computes them (its
  `distill.method_kwargs` entry updated with `distill.kwargs`; none for the method "none", which computes
  nothing), without the other methods' entries. Configs saved before `method_kwargs` existed held PKDOT's
  arguments in `distill.kwargs` whatever the method (ignored by "none", and an error for any other)."""
  distill = tree.get("distill")
  if not isinstance(distill, dict) or "method" not in distill:
    return tree
  tree = json.loads(json.dumps(tree))
  per_method = tree["distill"].pop("method_kwargs", None) or {}
  own = per_method.get(tree["distill"]["method"]) or {}
  method_none = tree["distill"]["method"] == "none"
  tree["distill"]["kwargs"] = {} if method_none else {**own, **(tree["distill"].get("kwargs") or {})}
  return tree


def check_or_write_config(workdir: str, config, drop: tuple[str, ...] = (), *, write: bool = True) -> None:
  """Writes `config.json` on a fresh workdir; on an existing one, refuses a different config by name.

  `drop`: dotted fields left out of the comparison and the file (a shared teacher directory ignores the
  student-side fields of the runs that use it). `write=False` only compares (the other processes of a
  multi-process job: process 0 writes).
  """
  path = records.config_path(workdir)
  current = drop_fields(config_to_dict(config), drop)
  if os.path.exists(path):
    saved = records.read_dict(path)
    a, b = _flatten(_loss_arguments(drop_fields(saved, drop))), _flatten(_loss_arguments(current))
    a.update({k: v for k, v in ADDED_FIELDS.items() if k in b and k not in a})
    differing = sorted(k for k in set(a) | set(b)
                       if a.get(k, "<absent>") != b.get(k, "<absent>")
                       and not any(k == f or k.startswith(f + ".") for f in RESUME_IGNORED_FIELDS))
    if differing:
      details = "; ".join(f"{k}: saved {a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r}"
                          for k in differing[:10])
      raise errors.ConfigError(f"workdir {workdir} holds a run with another config (differing fields: {details}). "
                               f"Use a new --workdir, or restore the original values to resume.")
    return
  if not write:
    return
  records.write_json(path, current, indent=2, sort_keys=True)  # atomic: never a half-written config


class Checkpointer:
  """Periodic checkpoints of a stage (orbax CheckpointManager), the latest `max_to_keep` kept.

  Each checkpoint holds the trainable state *and* the best-on-validation variables so far with their scores, so
  the best model survives a crash and a resumed run continues the same model selection.

  `min_interval_secs`: `save` skips a checkpoint taken sooner than this after the previous one (`force=True`
  always saves). A run of a few seconds then writes none and, if interrupted, simply starts again; a long run
  loses at most that much work.

  Orbax saves in the background; a checkpoint's manifest is written once its save is known finished: before the
  next save starts (orbax waits for the previous one there anyway), in `wait` and in `close`. A checkpoint found
  without one (the process stopped in between, or an older version saved it) is restored unverified.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2, min_interval_secs: float = 0.0):
    self.stage_dir = os.path.abspath(directory)
    self.latest = ocp.CheckpointManager(
        records.checkpoints_dir(self.stage_dir), item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True))
    self.min_interval_secs = float(min_interval_secs)
    self._last_save = time.monotonic()

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def step_dir(self, step: int) -> str:
    return os.path.join(records.checkpoints_dir(self.stage_dir), str(step))

  def manifest_path(self, step: int) -> str:
    return os.path.join(records.checksums_dir(self.stage_dir), f"checkpoint-{step}.json")

  def save(self, step: int, tree: Any, *, force: bool = False) -> None:
    if not force and time.monotonic() - self._last_save < self.min_interval_secs:
      return
    self.wait()
    self.latest.save(step, args=ocp.args.StandardSave(tree))
    self._last_save = time.monotonic()

  def saved_keys(self) -> set[str]:
    """The top-level keys of the latest checkpoint's tree (an older version saved fewer of them)."""
    step = self.latest.latest_step()
    return set() if step is None else set(self.latest.item_metadata(step).keys())

  def restore_latest(self, target: Any) -> Any:
    """The newest checkpoint that verifies and restores; a damaged newer one is named on stderr and moved to
    `<stage>/damaged/`. Raises `RecordError` when none is usable."""
    failures = []
    for step in sorted(self.latest.all_steps(), reverse=True):
      try:
        verified = checksums.verify(self.step_dir(step), self.manifest_path(step))
        with _orbax_errors(self.step_dir(step)):
          tree = self.latest.restore(step, args=ocp.args.StandardRestore(_abstract(target)))
      except records.RecordError as e:
        failures.append((step, str(e)))
        continue
      if failures:
        self._set_aside([s for s, _ in failures])
        print(f"pkdot: warning: {self.step_dir(failures[0][0])} is damaged ({failures[0][1]}); resuming from the "
              f"previous complete checkpoint, step {step}", file=sys.stderr)
      if not verified:
        print(f"pkdot: note: {self.step_dir(step)} has no checksum manifest (saved by an older version, or the "
              f"process stopped before writing it); restored unverified", file=sys.stderr)
      return tree
    raise records.RecordError(f"{self.step_dir(failures[0][0])}: no usable checkpoint in "
                              f"{records.checkpoints_dir(self.stage_dir)} ({'; '.join(m for _, m in failures)}); "
                              f"move the directory away to train this stage from the start")

  def restore_latest_as_saved(self) -> Any:
    """The latest checkpoint with the shardings it was saved with (inspection, tests)."""
    return self.latest.restore(self.latest.latest_step())

  def wait(self) -> None:
    """Waits for the pending save, then writes the manifests of finished checkpoints that lack one."""
    self.latest.wait_until_finished()
    if jax.process_index() != 0:
      return
    steps = set(self.latest.all_steps())
    for step in steps:
      if not os.path.exists(self.manifest_path(step)) and os.path.isdir(self.step_dir(step)):
        checksums.write(self.step_dir(step), self.manifest_path(step))
    manifests = records.checksums_dir(self.stage_dir)
    for name in os.listdir(manifests) if os.path.isdir(manifests) else ():
      stem = name.removeprefix("checkpoint-").removesuffix(".json")
      if name.startswith("checkpoint-") and stem.isdigit() and int(stem) not in steps:
        os.remove(os.path.join(manifests, name))  # orbax deleted that checkpoint (max_to_keep)

  def close(self) -> None:
    self.wait()
    self.latest.close()

  def _set_aside(self, steps: list[int]) -> None:
    """Moves damaged checkpoints (and their manifests) to `<stage>/damaged/`: kept for inspection, out of the
    way of the steps the resumed run saves again."""
    if jax.process_index() == 0:
      for step in steps:
        moved = records.set_aside(self.step_dir(step), self.stage_dir)
        if os.path.exists(self.manifest_path(step)):
          os.replace(self.manifest_path(step), moved + ".checksums.json")
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"{self.stage_dir} damaged checkpoints set aside")
    self.latest.reload()


@contextlib.contextmanager
def _orbax_errors(path: str):
  """Orbax and tensorstore failures on a damaged directory as one `RecordError` naming it; the asyncio
  'Event loop is closed' messages that come with them are silenced while restoring."""
  asyncio_log = logging.getLogger("asyncio")
  level = asyncio_log.level
  asyncio_log.setLevel(logging.CRITICAL)
  try:
    yield
  except (records.RecordError, KeyboardInterrupt):
    raise
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(" See full TensorStore details")[0][:300]
    gc.collect()  # the failed reads' orphaned asyncio tasks report themselves now, while their logger is quiet
    raise records.RecordError(f"{path}: cannot be restored ({type(e).__name__}: {first})") from e
  finally:
    asyncio_log.setLevel(level)


def _abstract(target: Any) -> Any:
  """Shapes, dtypes and shardings of `target`, so restored arrays land where the live ones are."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, target)


def _best_manifest(path: str) -> str:
  """The manifest of a saved-variables directory `<stage>/best`: `<stage>/checksums/best.json`."""
  return os.path.join(records.checksums_dir(os.path.dirname(path)), os.path.basename(path) + ".json")


def save_variables(path: str, variables: Any) -> None:
  """Saves a frozen model's variables (the teacher, the T-Net) for the next stage; atomic like checkpoints, then
  its checksum manifest (the old one removed first, so none ever describes a directory being rewritten)."""
  path = os.path.abspath(path)
  if jax.process_index() == 0:
    checksums.remove(_best_manifest(path))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, variables, force=True)
  checkpointer.wait_until_finished()
  if jax.process_index() == 0:
    checksums.write(path, _best_manifest(path))


def verify_variables(path: str) -> bool:
  """Raises `DamagedCheckpointError` naming the file when saved variables differ from their manifest; False
  when they have none."""
  return checksums.verify(os.path.abspath(path), _best_manifest(os.path.abspath(path)))


def load_variables(path: str, like: Any | None = None) -> Any:
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise errors.MissingError(f"{path} does not exist: run the stage that writes it first")
  verify_variables(path)
  checkpointer = ocp.StandardCheckpointer()
  with _orbax_errors(path):
    if like is None:
      return checkpointer.restore(path)
    return checkpointer.restore(path, _abstract(like))


def stage_done(workdir: str, stage: str) -> bool:
  """Whether a stage is finished: its result.json exists beside a best/ that matches its manifest (or has none:
  an older workdir)."""
  if not os.path.exists(records.result_path(workdir, stage)) or not os.path.isdir(records.best_dir(workdir, stage)):
    return False
  try:
    verify_variables(records.best_dir(workdir, stage))
  except checksums.DamagedCheckpointError:
    return False
  return True


def stage_finished(workdir: str, stage: str, *, writer: bool) -> bool:
  """Whether the trainer skips the stage. A result.json whose best/ is missing or damaged is not taken as done:
  the stage runs again (resuming from its last checkpoint, which holds the best variables); a damaged best/ is
  first moved to `<stage>/damaged/` (by the `writer` process); a warning says which."""
  if not os.path.exists(records.result_path(workdir, stage)):
    return False
  best = records.best_dir(workdir, stage)
  if not os.path.isdir(best):
    why = "is missing"
  else:
    try:
      verify_variables(best)
      return True
    except checksums.DamagedCheckpointError as e:
      why = f"is damaged ({e})"
    if writer:
      why += f"; moved to {records.set_aside(best, records.stage_dir(workdir, stage))}"
  print(f"pkdot: warning: {best} {why}: the {stage} stage runs again (its result.json is not taken as done)",
        file=sys.stderr)
  return False
