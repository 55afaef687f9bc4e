"""Checkpoints (orbax) and the run's identity (its config) in a workdir.

Layout of a stage's directory (config.json, the run's identity, sits in the workdir above):
  checkpoints/      periodic checkpoints, the latest `max_to_keep` kept (resume points); each also carries the
                    best-on-validation variables so far
  best/             written when the stage ends: the variables of the best validation epoch (next stage's input)

Orbax writes each checkpoint into a temporary directory and renames it into place when complete, so a crash
mid-save leaves the previous checkpoint as the latest usable one (the partial temporary directory is ignored on
restore and cleaned up by the next manager).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import orbax.checkpoint as ocp

from pkdot_jax.train import schema

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
  path = os.path.join(workdir, "config.json")
  current = drop_fields(config_to_dict(config), drop)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    a, b = _flatten(_loss_arguments(drop_fields(saved, drop))), _flatten(_loss_arguments(current))
    a.update({k: v for k, v in ADDED_FIELDS.items() if k in b and k not in a})
    differing = sorted(k for k in set(a) | set(b)
                       if a.get(k, "<absent>") != b.get(k, "<absent>")
                       and not any(k == f or k.startswith(f + ".") for f in RESUME_IGNORED_FIELDS))
    if differing:
      details = "; ".join(f"{k}: saved {a.get(k, '<absent>')!r}, now {b.get(k, '<absent>')!r}"
                          for k in differing[:10])
      raise ValueError(f"workdir {workdir} holds a run with another config (differing fields: {details}). "
                       f"Use a new --workdir, or restore the original values to resume.")
    return
  if not write:
    return
  os.makedirs(workdir, exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(current, f, indent=2, sort_keys=True)
  os.replace(tmp, path)  # atomic: a crash never leaves a half-written config


class Checkpointer:
  """Periodic checkpoints of a stage (orbax CheckpointManager), the latest `max_to_keep` kept.

  Each checkpoint holds the trainable state *and* the best-on-validation variables so far with their scores, so
  the best model survives a crash and a resumed run continues the same model selection.

  `min_interval_secs`: `save` skips a checkpoint taken sooner than this after the previous one (`force=True`
  always saves). A run of a few seconds then writes none and, if interrupted, simply starts again; a long run
  loses at most that much work.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2, min_interval_secs: float = 0.0):
    self.latest = ocp.CheckpointManager(
        os.path.join(os.path.abspath(directory), "checkpoints"),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True))
    self.min_interval_secs = float(min_interval_secs)
    self._last_save = time.monotonic()

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def save(self, step: int, tree: Any, *, force: bool = False) -> None:
    if not force and time.monotonic() - self._last_save < self.min_interval_secs:
      return
    self.latest.save(step, args=ocp.args.StandardSave(tree))
    self._last_save = time.monotonic()

  def restore_latest(self, target: Any) -> Any:
    step = self.latest.latest_step()
    return self.latest.restore(step, args=ocp.args.StandardRestore(_abstract(target)))

  def restore_latest_as_saved(self) -> Any:
    """The latest checkpoint with the shardings it was saved with (inspection, tests)."""
    return self.latest.restore(self.latest.latest_step())

  def wait(self) -> None:
    self.latest.wait_until_finished()

  def close(self) -> None:
    self.latest.close()


def _abstract(target: Any) -> Any:
  """Shapes, dtypes and shardings of `target`, so restored arrays land where the live ones are."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, target)


def save_variables(path: str, variables: Any) -> None:
  """Saves a frozen model's variables (the teacher, the T-Net) for the next stage; atomic like checkpoints."""
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.abspath(path), variables, force=True)
  checkpointer.wait_until_finished()


def load_variables(path: str, like: Any | None = None) -> Any:
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: run the stage that writes it first")
  checkpointer = ocp.StandardCheckpointer()
  if like is None:
    return checkpointer.restore(path)
  return checkpointer.restore(path, _abstract(like))
