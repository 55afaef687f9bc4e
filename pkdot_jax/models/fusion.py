"""Fusion modules and prediction heads. Each fusion maps (visual (B, Dv), privileged (B, Dp)) to
(prediction (B, num_outputs), fused embedding (B, embed_dim)).

Per-sample by construction. The authors' released fusion fed (B, 1, D) tensors to a sequence-first
``nn.MultiheadAttention``, so self-attention ran **across the batch** (a prediction depended on which samples
shared its batch) and the one-token cross-attention was degenerate (softmax over one key = identity).
Here every attention runs over tokens *of one sample*, and no layer normalises across the batch (LayerNorm
only, no BatchNorm), so a sample's output is independent of the rest of its batch in train and eval mode.

Tokenisation (choice): each modality's pooled embedding (B, D) is split into ``num_tokens`` contiguous
chunks (B, N, D / N), projected to the model width with a shared Dense and given a learned position
embedding. We tokenise the pooled vectors rather than the backbones' spatio-temporal feature maps because
the student's privileged stream is the T-Net output, a single vector per sample: the fusion must accept
pooled vectors for teacher and student alike so that the student can reuse the teacher's fusion
architecture (and, optionally, its weights). Splitting gives the attention something to attend over
(N tokens of a sample) at no backbone cost.

References:
  Aslam et al., "Privileged knowledge distillation for dimensional emotion recognition in the wild" /
  "Distilling privileged multimodal information for expression recognition using optimal transport",
  FG 2024 (gated cross-attention fusion).
  R. G. Praveen, E. Granger, P. Cardinal, "A Joint Cross-Attention Model for Audio-Visual Fusion in
  Dimensional Emotion Recognition", CVPR Workshops 2022 (JCA).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = Any
Dtype = Any


class Head(nn.Module):
  """Prediction head: logits for classification, tanh values in [-1, 1] for regression (valence/arousal)."""
  num_outputs: int
  task: str = "classification"

  @nn.compact
  def __call__(self, embedding: Array) -> Array:
    if self.task not in ("classification", "regression"):
      raise ValueError(f"Head: task must be 'classification' or 'regression', got {self.task!r}")
    out = nn.Dense(self.num_outputs, param_dtype=jnp.float32, name="dense")(embedding.astype(jnp.float32))
    return jnp.tanh(out) if self.task == "regression" else out


def _check_pair(module: str, visual: Array, privileged: Array) -> None:
  if visual.ndim != 2 or privileged.ndim != 2 or visual.shape[0] != privileged.shape[0]:
    raise ValueError(f"{module}: expected visual (B, Dv) and privileged (B, Dp) embeddings, got "
                     f"visual {tuple(visual.shape)} and privileged {tuple(privileged.shape)}")


class Tokenizer(nn.Module):
  """(B, D) -> (B, num_tokens, width): split into contiguous chunks, shared projection, position embedding."""
  num_tokens: int
  width: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if x.ndim != 2 or x.shape[-1] % self.num_tokens:
      raise ValueError(f"Tokenizer ({self.name}): expected (B, D) with D divisible by num_tokens="
                       f"{self.num_tokens}, got {tuple(x.shape)}")
    tokens = x.reshape(x.shape[0], self.num_tokens, x.shape[-1] // self.num_tokens)
    tokens = nn.Dense(self.width, dtype=self.dtype, param_dtype=jnp.float32, name="proj")(tokens)
    position = self.param("position", nn.initializers.normal(0.02), (self.num_tokens, self.width), jnp.float32)
    return tokens + position.astype(tokens.dtype)


class EncoderBlock(nn.Module):
  """Post-LN transformer encoder block as in the authors' fusion: x = LN(x + MHA(x)); x = LN(x + MLP(x))."""
  num_heads: int
  mlp_dim: int
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    attended = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32, dropout_rate=self.dropout,
        deterministic=not train, name="attention")(x, x)
    x = nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name="norm1")(x + attended)
    y = nn.Dense(self.mlp_dim, dtype=self.dtype, param_dtype=jnp.float32, name="mlp_in")(x)
    y = nn.Dense(x.shape[-1], dtype=self.dtype, param_dtype=jnp.float32, name="mlp_out")(nn.relu(y))
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return nn.LayerNorm(dtype=self.dtype, param_dtype=jnp.float32, name="norm2")(x + y)


class GatedCrossAttentionFusion(nn.Module):
  """The authors' gated cross-attention transformer, per sample.

  visual, privileged (B, D*) -> tokens (B, N, E) -> per-modality encoder block -> cross-attention both ways
  (visual-context tokens: privileged queries attend to visual keys/values, and vice versa, as in the
  authors' code) -> per-token sigmoid gate g = sigmoid(W [c_v, c_p]) -> g c_v + (1 - g) c_p -> mean over
  tokens = fused embedding (B, E) -> head.
  """
  num_outputs: int
  task: str = "classification"
  embed_dim: int = 512
  num_tokens: int = 8
  num_heads: int = 2
  mlp_dim: int = 512
  dropout: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, visual: Array, privileged: Array, train: bool) -> tuple[Array, Array]:
    _check_pair("GatedCrossAttentionFusion", visual, privileged)
    tv = Tokenizer(self.num_tokens, self.embed_dim, self.dtype, name="visual_tokens")(visual)
    tp = Tokenizer(self.num_tokens, self.embed_dim, self.dtype, name="privileged_tokens")(privileged)
    tv = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout, self.dtype, name="visual_encoder")(tv, train)
    tp = EncoderBlock(self.num_heads, self.mlp_dim, self.dropout, self.dtype,
                      name="privileged_encoder")(tp, train)

    def cross(name: str) -> nn.MultiHeadDotProductAttention:
      return nn.MultiHeadDotProductAttention(
          num_heads=self.num_heads, dtype=self.dtype, param_dtype=jnp.float32, dropout_rate=self.dropout,
          deterministic=not train, name=name)

    context_visual = cross("cross_visual")(tp, tv)          # queries: privileged; keys/values: visual
    context_privileged = cross("cross_privileged")(tv, tp)  # queries: visual; keys/values: privileged
    gate = jax.nn.sigmoid(nn.Dense(1, dtype=self.dtype, param_dtype=jnp.float32, name="gate")(
        jnp.concatenate([context_visual, context_privileged], axis=-1)))
    fused = gate * context_visual + (1.0 - gate) * context_privileged
    embedding = jnp.mean(fused.astype(jnp.float32), axis=1)
    return Head(self.num_outputs, self.task, name="head")(embedding), embedding


class JointCrossAttentionFusion(nn.Module):
  """Joint cross-attention (JCA, Praveen et al. 2022), per sample.

  With X_v, X_p (L, d) the token sequences of one sample (here L = num_tokens chunks of the pooled
  embeddings, each projected to ``token_dim``) and J = [X_v, X_p] (L, 2d):
    C_m = tanh(X_m^T (W_jm J^T)^T / sqrt(2d))        (d, 2d)   joint cross-correlation, W_jm (L, L)
    H_m = ReLU(W_cm C_m + W_m X_m^T)                 (d, k)    W_cm: 2d -> k, W_m: L -> k
    X_m' = (W_hm H_m)^T + X_m                         (L, d)    W_hm: k -> L
  then mean over L, concatenation, Dense(embed_dim) + ReLU = fused embedding, head.
  """
  num_outputs: int
  task: str = "regression"
  embed_dim: int = 512
  num_tokens: int = 8
  token_dim: int = 256
  hidden: int = 32
  dtype: Dtype = jnp.float32

  def _attend(self, name: str, x: Array, joint: Array) -> Array:
    num_tokens, joint_dim = x.shape[1], joint.shape[-1]
    dense = lambda features, n: nn.Dense(features, use_bias=False, dtype=self.dtype,  # noqa: E731
                                         param_dtype=jnp.float32, name=f"{name}_{n}")
    affine = dense(num_tokens, "affine")(jnp.swapaxes(joint, 1, 2))               # (B, 2d, L)
    correlation = jnp.einsum("bld,bel->bde", x, affine)                            # (B, d, 2d)
    correlation = jnp.tanh(correlation / jnp.sqrt(jnp.asarray(joint_dim, correlation.dtype)))
    hidden = nn.relu(dense(self.hidden, "w_c")(correlation) + dense(self.hidden, "w")(jnp.swapaxes(x, 1, 2)))
    return jnp.swapaxes(dense(num_tokens, "w_h")(hidden), 1, 2) + x              # (B, L, d)

  @nn.compact
  def __call__(self, visual: Array, privileged: Array, train: bool) -> tuple[Array, Array]:
    del train  # no dropout or normalisation with train/eval behaviour
    _check_pair("JointCrossAttentionFusion", visual, privileged)
    xv = Tokenizer(self.num_tokens, self.token_dim, self.dtype, name="visual_tokens")(visual)
    xp = Tokenizer(self.num_tokens, self.token_dim, self.dtype, name="privileged_tokens")(privileged)
    joint = jnp.concatenate([xv, xp], axis=-1)
    attended_v = self._attend("visual", xv, joint)
    attended_p = self._attend("privileged", xp, joint)
    pooled = jnp.concatenate([attended_v.mean(axis=1), attended_p.mean(axis=1)], axis=-1)
    embedding = nn.relu(nn.Dense(self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32,
                                 name="project")(pooled)).astype(jnp.float32)
    return Head(self.num_outputs, self.task, name="head")(embedding), embedding


class ConcatFusion(nn.Module):
  """Baseline: concat(visual, privileged) -> Dense(hidden) + ReLU -> Dense(embed_dim) + ReLU -> head."""
  num_outputs: int
  task: str = "classification"
  embed_dim: int = 512
  hidden: int = 512
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, visual: Array, privileged: Array, train: bool) -> tuple[Array, Array]:
    del train
    _check_pair("ConcatFusion", visual, privileged)
    x = jnp.concatenate([visual, privileged], axis=-1)
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, param_dtype=jnp.float32, name="hidden")(x))
    embedding = nn.relu(nn.Dense(self.embed_dim, dtype=self.dtype, param_dtype=jnp.float32,
                                 name="project")(x)).astype(jnp.float32)
    return Head(self.num_outputs, self.task, name="head")(embedding), embedding
