"""Named distillation methods: each is a set of config overrides on top of an experiment config.

A sweep or the demo names a method (`method=pkt`) instead of spelling out its fields. Every method trains the
same student architecture (video backbone + T-Net hallucinated privileged stream + the teacher's fusion
architecture) except `video_only`, the unimodal visual baseline (backbone + head, no teacher). Weights follow
the papers' usual settings where they give one (Hinton: T = 4; RKD: distance 25, angle 50; SP: 3000 in
Tung & Mori's CIFAR setting is for summed feature maps of wide nets, here the single fused embedding uses 1.0 as
a commonly used normalised value; PKDOT: lambda 0.6; MT-PKDOT: 0.8 task + 0.2 OT).
"""

from __future__ import annotations

from typing import Any

METHODS: dict[str, dict[str, Any]] = {
    "video_only": {"model.student.mode": "video_only", "distill.method": "none"},
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
}

# What the demo compares, in table order.
DEMO_METHODS = ("video_only", "hinton_kd", "fitnets", "mars", "pkt", "rkd", "sp", "privileged_cosine",
                "generalized_distillation", "mt_pkdot", "pkdot")


def overrides(name: str) -> dict[str, Any]:
  if name not in METHODS:
    raise ValueError(f"unknown method {name!r}; methods are {', '.join(sorted(METHODS))}")
  return dict(METHODS[name])
