"""Flax (linen) models: backbones, fusion, T-Net, teacher/student assemblies, factory and weight import.

Quick start::

  from pkdot_jax import models
  cfg = models.default_config("tiny")          # or "paper"
  teacher, student = models.build_teacher(cfg), models.build_student(cfg)
  batch = models.dummy_batch(cfg, batch_size=8)
  variables = models.init_variables(teacher, batch)                  # {"params", "batch_stats"}
  out = teacher.apply(variables, batch, train=False)                # ModelOutput
"""

from pkdot_jax.models.assemblies import (Adapter, ModelOutput, Student, Teacher, Unimodal,
                                         check_same_embedding_dim)
from pkdot_jax.models.backbones import AudioLogMelResNet, PhysioCNN1D, PhysioSpectrogramResNet
from pkdot_jax.models.factory import (PRIVILEGED_BACKBONES, VIDEO_BACKBONES, build_fusion,
                                      build_privileged_backbone, build_student, build_teacher, build_tnet,
                                      build_unimodal, build_video_backbone, default_config, dummy_batch,
                                      init_variables, privileged_dim, visual_dim)
from pkdot_jax.models.fusion import (ConcatFusion, GatedCrossAttentionFusion, Head,
                                     JointCrossAttentionFusion)
from pkdot_jax.models.resnet import CNN1D, R3D18, ResNet2D
from pkdot_jax.models.tnet import TNet

__all__ = [
    "Adapter", "AudioLogMelResNet", "CNN1D", "ConcatFusion", "GatedCrossAttentionFusion", "Head",
    "JointCrossAttentionFusion", "ModelOutput", "PRIVILEGED_BACKBONES", "PhysioCNN1D", "PhysioSpectrogramResNet",
    "R3D18", "ResNet2D", "Student", "TNet", "Teacher", "Unimodal", "VIDEO_BACKBONES", "build_fusion",
    "build_privileged_backbone", "build_student", "build_teacher", "build_tnet", "build_unimodal",
    "build_video_backbone", "check_same_embedding_dim", "default_config", "dummy_batch", "init_variables",
    "privileged_dim", "visual_dim",
]
