"""Losses by name, so configs and sweeps can say ``loss: rkd``; one registry for the whole project.

A loss declares its :class:`LossSpec` where it is defined, with the :func:`register` decorator::

  @register("rkd", inputs="embeddings")
  def rkd(student, teacher, *, distance_weight=25.0, angle_weight=50.0): ...

Its keyword arguments (what a config may pass, and their types) are read from the function's signature.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import jax
import jax.numpy as jnp

__all__ = ["LossSpec", "TRAINER_INPUTS", "available", "get", "register", "spec", "trainable"]

Inputs = Literal["embeddings", "logits", "feature_maps"]
INPUTS: tuple[str, ...] = ("embeddings", "logits", "feature_maps")


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """What a distillation loss consumes, so the trainer knows what to feed it.

  Attributes:
    name: registry name.
    fn: the loss, called as ``fn(student, teacher, **kwargs)`` or ``fn(student, teacher, labels, **kwargs)``.
    inputs: ``"embeddings"`` ((B, D) fused embeddings), ``"logits"`` ((B, C) class logits) or
      ``"feature_maps"`` ((B, ..., C) channels-last intermediate maps; NST).
    needs_labels: whether ``labels`` (B,) int is the third positional argument.
    same_dim: whether student and teacher must have the same feature shape (else the loss compares
      within-batch relations and dimensions may differ).
    returns_aux: whether ``fn(..., return_aux=True)`` also returns solver diagnostics (``converged``,
      ``n_iters``), which ``apply`` reports as ``ot_converged`` / ``ot_iterations``.
    tasks: the tasks whose outputs the loss can compare (class logits exist for classification only).
  """

  name: str
  fn: Callable
  inputs: Inputs
  needs_labels: bool
  same_dim: bool
  returns_aux: bool = False
  tasks: tuple[str, ...] = ("classification", "regression")

  def check(self, task: str, student_shape: tuple[int, ...] | None = None,
            teacher_shape: tuple[int, ...] | None = None) -> None:
    """Raises a ValueError naming the mismatch when the loss cannot compare these outputs."""
    if task not in self.tasks:
      compared = self.inputs.replace("logits", "class logits")
      raise ValueError(f"distillation loss {self.name!r} compares {compared}; it does not apply to the {task!r} "
                       f"task (choose an embedding-based loss)")
    if self.same_dim and student_shape is not None and teacher_shape is not None \
        and student_shape[-1] != teacher_shape[-1]:
      raise ValueError(f"distillation loss {self.name!r} needs student and teacher {self.inputs} of the same size, "
                       f"got student {tuple(student_shape)} and teacher {tuple(teacher_shape)}; match "
                       f"model.fusion.embed_dim or use a relation-based loss (pkdot, pkt, rkd, sp)")

  def apply(self, student: jax.Array, teacher: jax.Array, *, task: str, labels: jax.Array | None = None,
            **kwargs: Any) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss between student and teacher outputs in float32 (teacher under stop-gradient), checked first,
    and its diagnostics as float32 scalars (empty for losses without a solver)."""
    self.check(task, student.shape, teacher.shape)
    student = student.astype(jnp.float32)
    teacher = jax.lax.stop_gradient(teacher.astype(jnp.float32))
    if self.needs_labels:
      if labels is None:
        raise ValueError(f"distillation loss {self.name!r} needs the batch's class labels")
      kwargs["labels"] = labels
    if not self.returns_aux:
      return self.fn(student, teacher, **kwargs), {}
    value, aux = self.fn(student, teacher, return_aux=True, **kwargs)
    return value, {"ot_converged": jnp.asarray(aux.converged, jnp.float32),
                   "ot_iterations": jnp.max(jnp.asarray(aux.n_iters)).astype(jnp.float32)}


# Filled by `register` as the loss modules are imported (`pkdot_jax.losses` imports them all), in that order.
_SPECS: dict[str, LossSpec] = {}

# What the trainer hands a loss: the fused embeddings or the class logits (not intermediate feature maps).
TRAINER_INPUTS: tuple[str, ...] = ("embeddings", "logits")


def register(name: str, *, inputs: Inputs, needs_labels: bool = False, same_dim: bool = False,
             returns_aux: bool = False, tasks: tuple[str, ...] = ("classification", "regression")
             ) -> Callable[[Callable], Callable]:
  """Decorator declaring a distillation loss under ``name`` with its :class:`LossSpec` (the function itself is
  returned unchanged, so ``losses.get(name) is fn``). A name registered twice is a ValueError."""

  if inputs not in INPUTS:
    raise ValueError(f"loss {name!r}: inputs must be one of {INPUTS}, got {inputs!r}")

  def decorate(fn: Callable) -> Callable:
    if name in _SPECS:
      raise ValueError(f"loss {name!r} is registered twice: {_SPECS[name].fn.__module__}.{_SPECS[name].fn.__name__}"
                       f" and {fn.__module__}.{fn.__name__}")
    _SPECS[name] = LossSpec(name, fn, inputs, needs_labels=needs_labels, same_dim=same_dim,
                            returns_aux=returns_aux, tasks=tuple(tasks))
    return fn

  return decorate


def available() -> list[str]:
  """Sorted registered loss names."""
  return sorted(_SPECS)


def trainable() -> list[str]:
  """The registered losses the trainer can feed (inputs in :data:`TRAINER_INPUTS`), in registration order."""
  return [name for name, s in _SPECS.items() if s.inputs in TRAINER_INPUTS]


def spec(name: str) -> LossSpec:
  """The :class:`LossSpec` registered under ``name``; ValueError listing the valid names otherwise."""
  if not isinstance(name, str) or name not in _SPECS:
    raise ValueError(f"Unknown loss name {name!r}; valid names: {', '.join(available())}.")
  return _SPECS[name]


def get(name: str) -> Callable:
  """The loss function registered under ``name``; ValueError listing the valid names otherwise."""
  return spec(name).fn
