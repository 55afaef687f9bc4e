"""Named distillation methods: each is a set of config overrides on top of an experiment config.

A sweep or the demo names a method (`method=pkt`) instead of spelling out its fields. Every method trains the
same student architecture (video backbone + T-Net hallucinated privileged stream + the teacher's fusion
architecture) except `video_only`, the unimodal visual baseline (backbone + projection + head, no teacher).
`task_only` is that same T-Net + fusion student trained with the task loss alone: the control every
distillation loss is compared with (a difference to `video_only` mixes the architecture with the loss). Weights follow
the papers' usual settings where they give one (Hinton: T = 4; RKD: distance 25, angle 50; SP: 3000 in
Tung & Mori's CIFAR setting is for summed feature maps of wide nets, here the single fused embedding uses 1.0 as
a commonly used normalised value; PKDOT: lambda 0.6; MT-PKDOT: 0.8 task + 0.2 OT).
"""

from __future__ import annotations

from typing import Any

from pkdot_jax import errors, losses

METHODS: dict[str, dict[str, Any]] = {
    "video_only": {"model.student.mode": "video_only", "distill.method": "none"},
    "task_only": {"distill.method": "none"},
    "hinton_kd": {"distill.method": "hinton_kd", "distill.weight": 1.0, "distill.kwargs": {"temperature": 4.0}},
    "fitnets": {"distill.method": "fitnets", "distill.weight": 1.0, "distill.kwargs": {}},
    "mars": {"distill.method": "mars", "distill.weight": 1.0, "distill.kwargs": {}},
    "pkt": {"distill.method": "pkt", "distill.weight": 1.0, "distill.kwargs": {}},
    "rkd": {"distill.method": "rkd", "distill.weight": 1.0,
            "distill.kwargs": {"distance_weight": 25.0, "angle_weight": 50.0}},
    "sp": {"distill.method": "sp", "distill.weight": 1.0, "distill.kwargs": {}},
    "privileged_cosine": {"distill.method": "privileged_cosine", "distill.weight": 1.0, "distill.kwargs": {}},
    "generalized_distillation": {"distill.method": "generalized_distillation", "distill.weight": 1.0,
                                 "distill.task_weight": 0.0,
                                 "distill.kwargs": {"temperature": 2.0, "imitation": 0.5}},
    # The teacher head is chosen per batch (from the cached heads when the teacher cache is on).
    "mt_pkdot": {"distill.method": "pkdot", "distill.mt_pkdot": True, "distill.task_weight": 0.8,
                 "distill.weight": 0.2, "model.multitask": True},
    "pkdot": {"distill.method": "pkdot", "distill.weight": 0.6},
    # Registry losses the demo's default table leaves out (the full comparison, `pkdot demo --all`, has them).
    "dkd": {"distill.method": "dkd", "distill.weight": 1.0,
            "distill.kwargs": {"alpha": 1.0, "beta": 8.0, "temperature": 4.0}},
    "feature_mse": {"distill.method": "feature_mse", "distill.weight": 1.0, "distill.kwargs": {}},
    "cc": {"distill.method": "cc", "distill.weight": 1.0, "distill.kwargs": {}},
    "mmd": {"distill.method": "mmd", "distill.weight": 1.0, "distill.kwargs": {}},
}

# PKDOT ablation (experiments/sweeps/pkdot_ablation.py): one factor at a time around the demo's PKDOT (k = 8
# least-similar anchors, min shift, lambda 0.6, epsilon 0.01), each compared with the task_only control.
_PKDOT_KWARGS = {"k": 8, "epsilon": 0.01}
ABLATIONS: dict[str, dict[str, Any]] = {
    "pkdot_anchors_most": {"anchors": "most_similar"},
    "pkdot_anchors_all": {"anchors": "all"},
    "pkdot_k4": {"k": 4},
    "pkdot_k16": {"k": 16},
    "pkdot_shift_affine": {"shift": "affine"},
    "pkdot_eps0.05": {"epsilon": 0.05},
    "pkdot_eps0.1": {"epsilon": 0.1},
}
for _name, _kwargs in ABLATIONS.items():
  METHODS[_name] = {"distill.method": "pkdot", "distill.weight": 0.6,
                    "distill.kwargs": {**_PKDOT_KWARGS, **_kwargs}}
METHODS["pkdot_lambda0.3"] = {"distill.method": "pkdot", "distill.weight": 0.3}
METHODS["pkdot_lambda1.2"] = {"distill.method": "pkdot", "distill.weight": 1.2}
# PKDOT added to generalized distillation: the latter's objective (it holds the task term) + 0.6 x PKDOT.
METHODS["pkdot_plus_gd"] = {
    "distill.method": "pkdot", "distill.weight": 0.6, "distill.task_weight": 0.0,
    "distill.extra": ({"method": "generalized_distillation", "weight": 1.0,
                       "kwargs": dict(METHODS["generalized_distillation"]["distill.kwargs"])},)}
ABLATION_METHODS = ("task_only", "pkdot", *ABLATIONS, "pkdot_lambda0.3", "pkdot_lambda1.2",
                    "generalized_distillation", "pkdot_plus_gd")

# The baseline without a teacher and the same-architecture control (no distillation loss).
VIDEO_ONLY, CONTROL = "video_only", "task_only"

# What the default demo compares, in table order: the two controls, PKDOT and MT-PKDOT, the two positive
# controls (Hinton KD and generalized distillation help on real data), and one relational baseline. SP is chosen
# a priori: it matches the same batch cosine-similarity matrices PKDOT compares, without anchors and optimal
# transport, so PKDOT vs SP isolates what the OT machinery adds.
DEMO_METHODS = ("video_only", "task_only", "pkdot", "mt_pkdot", "generalized_distillation", "hinton_kd", "sp")

# The full comparison (`pkdot demo --all`): the two controls, then PKDOT and MT-PKDOT and the two positive
# controls in the demo's order, then every other registered loss the trainer can feed (embeddings or logits; NST
# needs intermediate feature maps, which the trainer does not expose) in registration order. A registered loss
# without a preset above runs with weight 1 and its own default arguments.
FULL_COMPARISON_LEAD = ("pkdot", "mt_pkdot", "generalized_distillation", "hinton_kd")


def full_comparison() -> tuple[str, ...]:
  """The methods of `pkdot demo --all`, in table order, from the loss registry (see above); a listed loss
  without a preset in `METHODS` gets the default one there."""
  rest = [name for name in losses.trainable() if name not in FULL_COMPARISON_LEAD]
  for name in rest:
    METHODS.setdefault(name, {"distill.method": name, "distill.weight": 1.0, "distill.kwargs": {}})
  return (VIDEO_ONLY, CONTROL, *FULL_COMPARISON_LEAD, *rest)


ALL_METHODS = full_comparison()

# `--all`: the distillation weight is chosen on validation subjects among three values around the published one
# (one member per value, trained side by side). Generalized distillation's objective already holds the task
# term, and with Adam a scale on the whole loss changes almost nothing; there the grid is the imitation
# parameter instead: task 1 + w x soft-label term is, up to scale, imitation w / (1 + w) = 0.25, 0.5, 0.75.
WEIGHT_GRID_FACTORS = (0.5, 1.0, 2.0)
GRID_OVERRIDES: dict[str, dict[str, Any]] = {
    "generalized_distillation": {"distill.task_weight": 1.0, "distill.weight": (1 / 3, 1.0, 3.0),
                                 "distill.kwargs": {"temperature": 2.0, "imitation": 1.0}},
}


def weight_grid(name: str) -> dict[str, Any]:
  """The overrides of method `name` in the full comparison: its preset with a tuple of distillation weights."""
  preset = overrides(name)
  if name in (VIDEO_ONLY, CONTROL):
    return {}
  if name in GRID_OVERRIDES:
    return dict(GRID_OVERRIDES[name])
  weight = float(preset.get("distill.weight", 1.0))
  return {"distill.weight": tuple(round(weight * f, 6) for f in WEIGHT_GRID_FACTORS)}


# A method name with this suffix (`pkdot@grid`) is its preset with the full comparison's weight grid.
GRID_SUFFIX = "@grid"


def base_name(name: str) -> str:
  return name.removesuffix(GRID_SUFFIX)


def overrides(name: str) -> dict[str, Any]:
  if name.endswith(GRID_SUFFIX):
    return {**overrides(base_name(name)), **weight_grid(base_name(name))}
  if name not in METHODS:
    raise errors.UsageError(f"unknown method {name!r}; methods are {', '.join(sorted(METHODS))}")
  return dict(METHODS[name])
