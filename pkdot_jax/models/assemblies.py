"""Teacher and student assemblies and their common output type.

Both are flax.linen modules called as ``model.apply(variables, batch, train=...)`` with variables
``{"params", "batch_stats"}`` (``mutable=["batch_stats"]`` in train mode). A frozen teacher is just
``(teacher.apply, teacher_variables)``.

Submodule names (what the trainer and the converter address):
  Teacher: ``visual_backbone``, ``privileged_backbone``, ``fusion`` (its head at ``fusion/head``), and with
    multitask (MT-PKDOT) ``visual_adapter``, ``privileged_adapter``, ``visual_head``, ``privileged_head``.
  Student: ``visual_backbone``, ``tnet`` and ``fusion`` (mode "tnet_fusion"), or ``projection`` and ``head``
    (mode "video_only").
  Unimodal (backbone pretraining): ``visual_backbone`` or ``privileged_backbone``, and ``head``.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from pkdot_jax.data.on_device import normalize_video
from pkdot_jax.models.fusion import Head

Array = Any


@flax.struct.dataclass
class ModelOutput:
  """What a teacher or student returns.

  Attributes:
    prediction: (B, num_outputs) logits (classification) or values in [-1, 1] (regression).
    embedding: (B, D) fused embedding, the layer before the head; what the distillation losses compare.
    visual: (B, Dv) visual backbone embedding.
    privileged: (B, Dp) privileged embedding: the real physio/audio embedding (teacher), the T-Net output
      (student "tnet_fusion"), or None (student "video_only").
    aux: extra outputs; for the MT-PKDOT teacher {"visual", "privileged", "joint"} predictions (B, K) and
      {"visual_embedding_adapted", "privileged_embedding_adapted"} (B, D). Empty otherwise.
  """
  prediction: Array
  embedding: Array
  visual: Array
  privileged: Array | None
  aux: dict[str, Array]


def _get(batch: Mapping[str, Array], key: str, module: str) -> Array:
  if key not in batch:
    raise ValueError(f"{module}: batch has no {key!r} entry (keys: {sorted(batch)})")
  return jnp.asarray(batch[key])


def _video(batch: Mapping[str, Array], module: str) -> Array:
  """batch["video"], normalised here when the loader shipped uint8 pixels (`pkdot_jax.data.on_device`)."""
  return normalize_video(_get(batch, "video", module))


class Adapter(nn.Module):
  """MT-PKDOT per-modality adapter: Dense(D) + ReLU + Dense(D), mapping a backbone embedding into the space
  of the joint (fused) embedding, where stage 1 aligns them with a cosine loss."""
  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    x = nn.relu(nn.Dense(self.features, name="dense0")(x.astype(jnp.float32)))
    return nn.Dense(self.features, name="dense1")(x)


class Teacher(nn.Module):
  """Multimodal teacher: video + privileged modality -> backbones -> fusion -> head.

  Attributes:
    visual_backbone: (B, T, H, W, 3) -> (B, Dv).
    privileged_backbone: batch[privileged_key] -> (B, Dp).
    fusion: (visual, privileged, train) -> (prediction, embedding).
    privileged_key: "physio" or "audio".
    multitask: add MT-PKDOT adapters and per-modality heads (outputs in ``aux``).
    num_outputs, task, embed_dim: for the per-modality heads and adapters (multitask only).
  """
  visual_backbone: nn.Module
  privileged_backbone: nn.Module
  fusion: nn.Module
  privileged_key: str = "physio"
  multitask: bool = False
  num_outputs: int = 2
  task: str = "classification"
  embed_dim: int = 512

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool) -> ModelOutput:
    visual = self.visual_backbone(_video(batch, "Teacher"), train)
    privileged = self.privileged_backbone(_get(batch, self.privileged_key, "Teacher"), train)
    prediction, embedding = self.fusion(visual, privileged, train)
    aux = {}
    if self.multitask:
      visual_adapted = Adapter(self.embed_dim, name="visual_adapter")(visual)
      privileged_adapted = Adapter(self.embed_dim, name="privileged_adapter")(privileged)
      aux = {
          "visual": Head(self.num_outputs, self.task, name="visual_head")(visual_adapted),
          "privileged": Head(self.num_outputs, self.task, name="privileged_head")(privileged_adapted),
          "joint": prediction,
          "visual_embedding_adapted": visual_adapted,
          "privileged_embedding_adapted": privileged_adapted,
      }
    return ModelOutput(prediction, embedding, visual, privileged, aux)


class Student(nn.Module):
  """Video-only student.

  mode "tnet_fusion": video -> visual backbone -> ``tnet`` hallucinates the privileged embedding -> the
    teacher's fusion architecture -> head. ``stop_gradient_tnet_input`` (authors: True) keeps the fusion's
    gradient from reaching the backbone through the (frozen) T-Net, whose input then stays the visual
    feature it was fitted on, up to the backbone's own fine-tuning.
  mode "video_only": video -> visual backbone -> ``projection`` (Dense(embed_dim) + ReLU, or the backbone
    feature itself when ``embed_dim`` is None) -> ``head``; privileged = None.
  ``freeze_backbone``: the backbone always runs in eval mode (BatchNorm uses and keeps its running statistics)
    and its feature is under stop-gradient, so a backbone loaded from an earlier stage stays exactly as loaded
    (with the trainer's zero updates for its parameters) and its backward pass is never computed.
  """
  visual_backbone: nn.Module
  fusion: nn.Module | None = None
  tnet: nn.Module | None = None
  mode: str = "tnet_fusion"
  stop_gradient_tnet_input: bool = True
  num_outputs: int = 2
  task: str = "classification"
  embed_dim: int | None = 512
  freeze_backbone: bool = False

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool) -> ModelOutput:
    visual = self.visual_backbone(_video(batch, "Student"), train and not self.freeze_backbone)
    if self.freeze_backbone:
      visual = jax.lax.stop_gradient(visual)
    if self.mode == "tnet_fusion":
      if self.fusion is None or self.tnet is None:
        raise ValueError("Student: mode 'tnet_fusion' needs both a fusion module and a tnet")
      tnet_input = jax.lax.stop_gradient(visual) if self.stop_gradient_tnet_input else visual
      privileged = self.tnet(tnet_input)
      prediction, embedding = self.fusion(visual, privileged, train)
      return ModelOutput(prediction, embedding, visual, privileged, {})
    if self.mode == "video_only":
      embedding = visual
      if self.embed_dim is not None:
        embedding = nn.relu(nn.Dense(self.embed_dim, name="projection")(visual))
      prediction = Head(self.num_outputs, self.task, name="head")(embedding)
      return ModelOutput(prediction, embedding, visual, None, {})
    raise ValueError(f"Student: mode must be 'tnet_fusion' or 'video_only', got {self.mode!r}")


class Unimodal(nn.Module):
  """One modality -> its backbone -> head, for pretraining a backbone before the teacher (pipeline stage 1).

  Exactly one of ``visual_backbone`` (reads batch["video"]) and ``privileged_backbone`` (reads
  batch[privileged_key]) is set; the submodule keeps the teacher's name so that its variables graft into
  the teacher unchanged. Output: embedding = the backbone feature, ``visual`` or ``privileged`` = the same
  feature, the other None; aux empty.
  """
  visual_backbone: nn.Module | None = None
  privileged_backbone: nn.Module | None = None
  privileged_key: str = "physio"
  num_outputs: int = 2
  task: str = "classification"

  @nn.compact
  def __call__(self, batch: Mapping[str, Array], train: bool) -> ModelOutput:
    if (self.visual_backbone is None) == (self.privileged_backbone is None):
      raise ValueError("Unimodal: set exactly one of visual_backbone and privileged_backbone")
    if self.visual_backbone is not None:
      feature = self.visual_backbone(_video(batch, "Unimodal"), train)
      visual, privileged = feature, None
    else:
      feature = self.privileged_backbone(_get(batch, self.privileged_key, "Unimodal"), train)
      visual, privileged = None, feature
    prediction = Head(self.num_outputs, self.task, name="head")(feature)
    return ModelOutput(prediction, feature, visual, privileged, {})


def check_same_embedding_dim(student: Array, teacher: Array, what: str = "embedding") -> None:
  """ValueError when a loss that needs equal dimensions (feature MSE, cosine alignment) gets unequal ones."""
  if student.ndim != 2 or teacher.ndim != 2 or student.shape[-1] != teacher.shape[-1]:
    raise ValueError(f"{what}: student and teacher embeddings must both be (B, D) with the same D, got "
                     f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)}")
