"""T-Net: the MLP that hallucinates the privileged embedding from the visual one (fitted on the teacher's
features with MSE, then frozen inside the student under the submodule name ``tnet``)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = Any


class TNet(nn.Module):
  """T-Net: MLP from the visual embedding to the privileged embedding (authors: 512-256-128-256-512).

  Input (B, in_dim), output (B, out_dim). ReLU between layers; no output activation by default (the
  privileged embeddings are unbounded post-ReLU means, not [0, 1] values; the authors' sigmoid is offered
  as ``output_activation="sigmoid"`` for targets in [0, 1]).
  """
  out_dim: int = 512
  hidden: tuple[int, ...] = (256, 128, 256)
  in_dim: int | None = None
  output_activation: str | None = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if x.ndim != 2 or (self.in_dim is not None and x.shape[-1] != self.in_dim):
      raise ValueError(f"TNet: expected visual embedding (B, {self.in_dim or 'D'}), got {tuple(x.shape)}")
    x = x.astype(jnp.float32)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"dense{i}")(x))
    x = nn.Dense(self.out_dim, name=f"dense{len(self.hidden)}")(x)
    activations = {None: lambda y: y, "none": lambda y: y, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh,
                   "relu": nn.relu}
    if self.output_activation not in activations:
      raise ValueError(f"TNet: output_activation must be one of None, 'sigmoid', 'tanh', 'relu', got "
                       f"{self.output_activation!r}")
    return activations[self.output_activation](x)
