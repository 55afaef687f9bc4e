"""A light video backbone for small clips on CPUs: a 2-D CNN applied to every frame, then temporal pooling.

Per frame (shared weights): len(widths) stages of conv 3x3 stride 2 (no bias) + BatchNorm + ReLU, then a
global spatial mean -> (B, T, widths[-1]). Over time: the mean and the range (max - min) of the per-frame
features, concatenated and projected by a Dense layer + ReLU to widths[-1] (the range sees a transient
expression that a plain mean would dilute). Output (B, widths[-1]) float32, like R3D18's.

For the synthetic demo clips (4 x 32 x 32) this is several times cheaper per step than the tiny R3D-18 on a
CPU (docs/experiments.md gives the measurement); it has no torchvision counterpart (no weight import).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from pkdot_jax.models.resnet import batch_norm, check_input, conv_init

Array = Any


class FrameCNN(nn.Module):
  widths: Sequence[int] = (16, 32, 64)
  dtype: Any = jnp.float32
  temporal: str = "late"  # "late": per-frame CNN + mean/range over time; "early": frames stacked on channels

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    check_input(x, "FrameCNN", 5, None, "(B, T, H, W, C)")
    b, t, h, w, c = x.shape
    if self.temporal == "early":
      y = jnp.transpose(x.astype(self.dtype), (0, 2, 3, 1, 4)).reshape(b, h, w, t * c)
      for i, width in enumerate(self.widths):
        y = nn.Conv(width, (3, 3), (2, 2), ((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                    param_dtype=jnp.float32, kernel_init=conv_init, name=f"conv{i + 1}")(y)
        y = nn.relu(batch_norm(train, self.dtype, f"bn{i + 1}")(y))
      return jnp.mean(y.astype(jnp.float32), axis=(1, 2))
    if self.temporal != "late":
      raise ValueError(f"FrameCNN: temporal must be 'late' or 'early', got {self.temporal!r}")
    y = x.astype(self.dtype).reshape(b * t, h, w, c)
    for i, width in enumerate(self.widths):
      y = nn.Conv(width, (3, 3), (2, 2), ((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                  param_dtype=jnp.float32, kernel_init=conv_init, name=f"conv{i + 1}")(y)
      y = nn.relu(batch_norm(train, self.dtype, f"bn{i + 1}")(y))
    frames = jnp.mean(y.astype(jnp.float32), axis=(1, 2)).reshape(b, t, -1)
    pooled = jnp.concatenate([frames.mean(1), frames.max(1) - frames.min(1)], axis=-1)
    return nn.relu(nn.Dense(int(self.widths[-1]), name="temporal_proj")(pooled))
