"""Video normalisation inside the jitted programs, so the host ships uint8 clips.

Profiling one epoch of the loader at the paper's shapes (10 x 112 x 112 clips, 0 workers) put half of the host
time in `transforms.Normalize` (uint8 -> float32, four times the bytes), and the float32 batches are four times
the shared memory worker processes pass back. The trainer's loaders therefore stop at uint8, and every model
normalises a uint8 `video` as its first operation: the same formula as `transforms.Normalize` on the same
Kinetics statistics, computed by XLA next to the first convolution. A float video is taken as already
normalised (batches built by hand, benchmarks, a host chain that still ends in `Normalize`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from pkdot_jax.data.transforms import KINETICS_MEAN, KINETICS_STD


def normalize_video(video, mean: Sequence[float] = KINETICS_MEAN, std: Sequence[float] = KINETICS_STD):
  """uint8 (..., 3) pixels -> float32 (x / 255 - mean) / std per channel; any other dtype is returned as is.

  The formula and operation order of `transforms.Normalize`, so host- and device-normalised clips agree to a
  float32 rounding."""
  if video.dtype != jnp.uint8 and video.dtype != np.uint8:
    return video
  x = jnp.asarray(video).astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
