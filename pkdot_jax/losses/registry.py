"""Losses by name, so configs and sweeps can say ``loss: rkd``; one registry for the whole project."""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Literal, Mapping

import jax
import jax.numpy as jnp

from pkdot_jax.losses import baselines
from pkdot_jax.losses.pkdot import pkdot

__all__ = ["LossSpec", "available", "get", "spec"]

Inputs = Literal["embeddings", "logits", "feature_maps"]


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


_SPECS: Mapping[str, LossSpec] = types.MappingProxyType({
    s.name: s
    for s in (
        LossSpec("pkdot", pkdot, "embeddings", needs_labels=False, same_dim=False, returns_aux=True),
        LossSpec("hinton_kd", baselines.hinton_kd, "logits", needs_labels=False, same_dim=True,
                 tasks=("classification",)),
        LossSpec("dkd", baselines.dkd, "logits", needs_labels=True, same_dim=True, tasks=("classification",)),
        LossSpec("generalized_distillation", baselines.generalized_distillation, "logits", needs_labels=True,
                 same_dim=True, tasks=("classification",)),
        LossSpec("fitnets", baselines.fitnets, "embeddings", needs_labels=False, same_dim=True),
        LossSpec("feature_mse", baselines.feature_mse, "embeddings", needs_labels=False, same_dim=True),
        LossSpec("mars", baselines.mars, "embeddings", needs_labels=False, same_dim=True),
        LossSpec("privileged_cosine", baselines.privileged_cosine, "embeddings", needs_labels=False,
                 same_dim=True),
        LossSpec("pkt", baselines.pkt, "embeddings", needs_labels=False, same_dim=False),
        LossSpec("rkd", baselines.rkd, "embeddings", needs_labels=False, same_dim=False),
        LossSpec("sp", baselines.sp, "embeddings", needs_labels=False, same_dim=False),
        LossSpec("cc", baselines.cc, "embeddings", needs_labels=False, same_dim=False),
        LossSpec("mmd", baselines.mmd, "embeddings", needs_labels=False, same_dim=True),
        LossSpec("nst", baselines.nst, "feature_maps", needs_labels=False, same_dim=False),
    )
})  # read-only


def available() -> list[str]:
  """Sorted registered loss names."""
  return sorted(_SPECS)


def spec(name: str) -> LossSpec:
  """The :class:`LossSpec` registered under ``name``; ValueError listing the valid names otherwise."""
  if not isinstance(name, str) or name not in _SPECS:
    raise ValueError(f"Unknown loss name {name!r}; valid names: {', '.join(available())}.")
  return _SPECS[name]


def get(name: str) -> Callable:
  """The loss function registered under ``name``; ValueError listing the valid names otherwise."""
  return spec(name).fn
