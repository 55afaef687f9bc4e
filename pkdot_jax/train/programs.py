"""What a process keeps between runs, owned by the caller: compiled programs, saved variables, decoded data.

The CLI creates one `Context` per command, a sweep one for all its runs, a test one per test; nothing is kept
at module level. Within a context, the folds, seeds and methods of a sweep trace and compile each program once,
read a shared teacher's variables once, and decode an in-memory dataset once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable

import jax
import numpy as np

from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train import steps


class Programs:
  """Jitted functions built once per key (what shapes them: stage, model, losses, optimizer, mesh).

  Student programs can hold several distillation losses: `share_losses(configs)` declares that the runs whose
  configs differ only in the loss (`stages.FIELDS.program_neutral`) compile one program with all their losses as
  branches; each run then selects its own (a switch on an array hyperparameter). The configs are not modified.
  """

  def __init__(self):
    self._built: dict[str, Any] = {}
    self._shared_losses: dict[str, list[dict[str, Any]]] = {}

  def get(self, kind: str, key: Any, build: Callable[[], Any]) -> Any:
    name = kind + ":" + json.dumps(key, sort_keys=True, default=str)
    if name not in self._built:
      self._built[name] = build()
    return self._built[name]

  def keys(self) -> list[str]:
    """`kind:key` of every program built so far (kinds: init, opt_init, train_step, eval)."""
    return list(self._built)

  def share_losses(self, configs: Iterable[Any]) -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
      losses = groups.setdefault(stages_lib.program_group(config), [])
      own = steps.distill_branch(config.distill)
      if own not in losses:
        losses.append(own)
    self._shared_losses.update({group: losses for group, losses in groups.items() if len(losses) > 1})

  def student_losses(self, config) -> tuple[list[dict[str, Any]], int]:
    """The distillation losses compiled into this run's student program, and the index of its own."""
    own = steps.distill_branch(config.distill)
    losses = self._shared_losses.get(stages_lib.program_group(config), [own])
    if own not in losses:  # declared for other configs of the same group: this one compiles alone
      return [own], 0
    return losses, losses.index(own)


class SavedVariables:
  """Earlier stages' saved variables as host arrays, read once while unchanged on disk (the runs of a sweep
  that share a teacher read it once). Keeps the `capacity` most recently added."""

  def __init__(self, capacity: int = 8):
    self.capacity = capacity
    self._entries: dict[tuple[str, int], Any] = {}

  def load(self, path: str) -> Any:
    path = os.path.abspath(path)
    if not os.path.exists(path):
      return ckpt_lib.load_variables(path)  # FileNotFoundError naming the stage to run first
    key = (path, os.stat(path).st_mtime_ns)
    if key not in self._entries:
      while len(self._entries) >= self.capacity:
        self._entries.pop(next(iter(self._entries)))
      self._entries[key] = jax.tree.map(np.asarray, ckpt_lib.load_variables(path))
    return self._entries[key]


@dataclasses.dataclass
class Context:
  """Everything a process shares between the runs it trains (see the module docstring)."""
  programs: Programs = dataclasses.field(default_factory=Programs)
  saved: SavedVariables = dataclasses.field(default_factory=SavedVariables)
  datasets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # in-memory data sources
