"""A light video backbone for small clips on CPUs: a 2-D CNN applied to every frame, then temporal pooling.

Per frame (shared weights): len(widths) stages of conv 3x3 stride 2 (no bias) + BatchNorm + ReLU. Then, by
`temporal`:
  "late_spatial"  (factory arch "frame_cnn_spatial", the synthetic demo's) the temporal mean and range
                  (max - min) of the last feature map at every location, flattened, Dense(widths[-1]) + ReLU: a
                  transient expression at the eyes or mouth stays located;
  "late"          (arch "frame_cnn") the same after a global spatial mean per frame (cheaper, loses where);
  "early"         (arch "stack_cnn") the frames stacked along channels, one 2-D CNN per clip, global mean.
Output (B, widths[-1]) float32, like R3D18's.

For the synthetic demo clips (4 x 32 x 32, batch 32) a student step is 0.57 GFLOP against the tiny R3D-18's
1.54; docs/experiments.md gives the measured times and accuracies. No torchvision counterpart (no weight
import).
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

  @property
  def output_dim(self) -> int:
    """Width of the output feature (B, D): the last stage's channels ("early") or the temporal projection's."""
    return int(self.widths[-1])

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
    if self.temporal not in ("late", "late_spatial"):
      raise ValueError(f"FrameCNN: temporal must be 'late', 'late_spatial' or 'early', got {self.temporal!r}")
    y = x.astype(self.dtype).reshape(b * t, h, w, c)
    for i, width in enumerate(self.widths):
      y = nn.Conv(width, (3, 3), (2, 2), ((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                  param_dtype=jnp.float32, kernel_init=conv_init, name=f"conv{i + 1}")(y)
      y = nn.relu(batch_norm(train, self.dtype, f"bn{i + 1}")(y))
    if self.temporal == "late_spatial":  # temporal mean / range per location of the last map, then flattened
      maps = y.astype(jnp.float32).reshape(b, t, *y.shape[1:])
      pooled = jnp.concatenate([maps.mean(1), maps.max(1) - maps.min(1)], axis=-1).reshape(b, -1)
      return nn.relu(nn.Dense(int(self.widths[-1]), name="temporal_proj")(pooled))
    frames = jnp.mean(y.astype(jnp.float32), axis=(1, 2)).reshape(b, t, -1)
    pooled = jnp.concatenate([frames.mean(1), frames.max(1) - frames.min(1)], axis=-1)
    return nn.relu(nn.Dense(int(self.widths[-1]), name="temporal_proj")(pooled))
