"""Losses by name, so configs and sweeps can say ``loss: rkd``; one registry for the whole project."""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

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
  """

  name: str
  fn: Callable
  inputs: Inputs
  needs_labels: bool
  same_dim: bool


_SPECS: dict[str, LossSpec] = {
    s.name: s
    for s in (
        LossSpec("pkdot", pkdot, "embeddings", needs_labels=False, same_dim=False),
        LossSpec("hinton_kd", baselines.hinton_kd, "logits", needs_labels=False, same_dim=True),
        LossSpec("dkd", baselines.dkd, "logits", needs_labels=True, same_dim=True),
        LossSpec("generalized_distillation", baselines.generalized_distillation, "logits", needs_labels=True,
                 same_dim=True),
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
}


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
