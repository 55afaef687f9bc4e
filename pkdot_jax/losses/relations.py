"""Relational building blocks of PKDOT: cosine-similarity matrices, anchors, shifts.

These are the steps 1-4 of the method (docs/design.md, section 1), each usable alone:

  S = cosine_similarity_matrix(z)                       # (B, B)
  idx = select_anchors(S_teacher, k, "least_similar")   # (B, k) int32
  S_plus = shift_similarity(S, "min")                   # (B, B), >= 0
  cloud = gather_anchors(S_plus, idx)                   # (B, k): row i = S_plus[i, idx[i]]
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

__all__ = [
    "ANCHOR_MODES",
    "SHIFT_MODES",
    "cosine_similarity_matrix",
    "select_anchors",
    "shift_similarity",
    "gather_anchors",
]

AnchorMode = Literal["least_similar", "most_similar", "all"]
ShiftMode = Literal["min", "affine"]
ANCHOR_MODES = ("least_similar", "most_similar", "all")
SHIFT_MODES = ("min", "affine")

# Norm guard: like torch.nn.functional.normalize's `eps`, but applied inside the square root so that the
# gradient at an exactly-zero vector is 0 rather than NaN (d|x|/dx is undefined at 0).
_NORM_EPS = 1e-8


def _check_matrix(name: str, x: jax.Array) -> None:
  if jnp.ndim(x) != 2:
    raise ValueError(f"{name} must be a 2-D (batch, features) array, got shape {jnp.shape(x)}.")


def _as_float(x: jax.Array) -> jax.Array:
  return x if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else jnp.asarray(x, jnp.float32)


def cosine_similarity_matrix(
    x: jax.Array, y: jax.Array | None = None, *, eps: float = _NORM_EPS
) -> jax.Array:
  """Cosine similarities between the rows of ``x`` and the rows of ``y`` (default ``y = x``).

  ``S[i, j] = <x_i, y_j> / (|x_i| |y_j|)``, the same at any scale of the rows the dtype can hold (each row is
  divided by its max-abs before its norm is taken, so neither |x|^2 overflows nor a tiny row meets the guard).

  A zero row gives a zero row/column of similarities instead of NaN; its self-similarity is therefore 0, not 1.
  NaN inputs propagate to NaN similarities. Integer inputs are computed in float32.

  Args:
    x: (N, D) array.
    y: optional (M, D) array; defaults to ``x``.
    eps: norm guard, applied to the max-abs-scaled rows (whose norm is 0 or >= 1): it only sets the gradient at
      an exactly-zero row.

  Returns:
    (N, M) array of cosine similarities in [-1, 1] (up to rounding), dtype of ``x``.
  """
  _check_matrix("x", x)
  x = _as_float(x)
  if y is not None:
    y = _as_float(y)
    _check_matrix("y", y)
    if x.shape[1] != y.shape[1]:
      raise ValueError(
          f"x and y must have the same feature dimension, got x {x.shape} and y {y.shape}."
      )

  def unit(v: jax.Array) -> jax.Array:
    # Rows over their max-abs first (under stop_gradient: the unit vector does not depend on it, so the gradient
    # is exact): |v|^2 neither overflows (1e20 in float32) nor falls below eps^2 (a 1e-9 row would be divided by
    # eps, not by its norm); the guard then acts on exactly-zero rows only.
    peak = jax.lax.stop_gradient(jnp.max(jnp.abs(v), axis=-1, keepdims=True))
    v = v / jnp.where(peak > 0, peak, 1.0)
    sq_norm = jnp.sum(v * v, axis=-1, keepdims=True)
    return v / jnp.sqrt(jnp.maximum(sq_norm, eps * eps))

  ux = unit(x)
  uy = ux if y is None else unit(y)
  # HIGHEST: on TPU/GPU the default matmul precision may drop to bf16/tf32 passes, which moves cosines by
  # ~1e-3, more than the OT loss tolerates at eps = 0.01.
  return jnp.matmul(ux, uy.T, precision=jax.lax.Precision.HIGHEST)


def select_anchors(teacher_similarity: jax.Array, k: int, mode: AnchorMode = "least_similar") -> jax.Array:
  """Per-row anchor indices chosen on the teacher's (unshifted) similarity matrix.

  The selection is made under ``stop_gradient`` (indices are not differentiable anyway; the stop makes
  clear that no gradient flows into the teacher through the choice).

  Args:
    teacher_similarity: (B, B) similarity matrix S_T.
    k: number of anchors per row; must satisfy 1 <= k < B unless ``mode == "all"`` (then ignored).
    mode: ``"least_similar"``: the k smallest entries of each row, ascending (the authors' code,
      ``torch.topk(S, k, largest=False)``; the diagonal is the row maximum and is never chosen when k < B).
      ``"most_similar"``: the k largest off-diagonal entries, descending (the diagonal is excluded).
      ``"all"``: every column, in index order (``k`` is ignored).

  Returns:
    (B, k) int32 indices, or (B, B) for ``"all"``. Ties are broken towards the lower column index.
  """
  _check_matrix("teacher_similarity", teacher_similarity)
  n_rows, n_cols = teacher_similarity.shape
  if n_rows != n_cols:
    raise ValueError(f"teacher_similarity must be square (B, B), got shape {teacher_similarity.shape}.")
  if mode not in ANCHOR_MODES:
    raise ValueError(f"anchors must be one of {ANCHOR_MODES}, got {mode!r}.")
  if mode == "all":
    return jnp.broadcast_to(jnp.arange(n_cols, dtype=jnp.int32), (n_rows, n_cols))
  if not isinstance(k, (int,)) or isinstance(k, bool):
    raise ValueError(f"k must be a Python int, got {k!r} of type {type(k).__name__}.")
  if k < 1 or k >= n_rows:
    raise ValueError(
        f"k must satisfy 1 <= k < B (k anchors per row, the row's own sample excluded), got k={k} and "
        f"B={n_rows} (teacher_similarity shape {teacher_similarity.shape}); use a smaller k, a larger "
        f"batch, or anchors='all'."
    )
  sim = jax.lax.stop_gradient(teacher_similarity)
  if mode == "least_similar":
    _, indices = jax.lax.top_k(-sim, k)
  else:
    diagonal = jnp.eye(n_rows, dtype=bool)
    _, indices = jax.lax.top_k(jnp.where(diagonal, -jnp.inf, sim), k)
  return indices.astype(jnp.int32)


def shift_similarity(similarity: jax.Array, mode: ShiftMode = "min") -> jax.Array:
  """Make a similarity matrix non-negative.

  ``"min"``: ``S - min(S)`` with the global minimum of this matrix (the authors' code; the minimum is part of
  the differentiated graph, no stop-gradient). ``"affine"``: the fixed map ``(S + 1) / 2`` onto [0, 1].

  Args:
    similarity: (B, B) array (any shape works; the minimum is global).
    mode: ``"min"`` or ``"affine"``.

  Returns:
    Array of the same shape.
  """
  if mode == "min":
    return similarity - jnp.min(similarity)
  if mode == "affine":
    return 0.5 * (similarity + 1.0)
  raise ValueError(f"shift must be one of {SHIFT_MODES}, got {mode!r}.")


def gather_anchors(similarity: jax.Array, anchor_indices: jax.Array) -> jax.Array:
  """Row-wise gather: ``out[i, j] = similarity[i, anchor_indices[i, j]]``.

  Args:
    similarity: (B, B) array.
    anchor_indices: (B, k) integer array.

  Returns:
    (B, k) array: row i is sample i's point in R^k.
  """
  _check_matrix("similarity", similarity)
  _check_matrix("anchor_indices", anchor_indices)
  if anchor_indices.shape[0] != similarity.shape[0]:
    raise ValueError(
        f"anchor_indices must have one row per similarity row, got anchor_indices "
        f"{anchor_indices.shape} and similarity {similarity.shape}."
    )
  return jnp.take_along_axis(similarity, anchor_indices, axis=1)
