"""PKDOT: privileged knowledge distillation with optimal transport (Aslam et al., FG 2024)."""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from pkdot_jax.losses import ot
from pkdot_jax.losses import relations
from pkdot_jax.losses.registry import register

__all__ = ["pkdot"]


def _replicate_if_explicitly_sharded(x: jax.Array) -> jax.Array:
  """Reshard an array whose *type* carries an Explicit-axis sharding to fully replicated.

  Under ``jax.make_mesh``'s default Explicit axes, a batch-sharded (B, D) array has sharding in its type and
  ``x @ x.T`` would have to be sharded over the batch axis twice, which JAX rejects. The loss needs every
  pair of the *global* batch anyway, so we replicate the (small) embeddings and let every device solve the
  same B x k problem. Under Auto axes (or no mesh) the compiler already sees global arrays: nothing to do.
  """
  sharding = getattr(jax.typeof(x), "sharding", None)
  spec = getattr(sharding, "spec", None)
  if spec is None or all(entry is None for entry in spec):
    return x
  return jax.sharding.reshard(x, PartitionSpec())


def _check_embeddings(student: jax.Array, teacher: jax.Array) -> None:
  for name, x in (("student", student), ("teacher", teacher)):
    if jnp.ndim(x) != 2:
      raise ValueError(f"{name} must be a 2-D (batch, features) array, got shape {jnp.shape(x)}.")
  if student.shape[0] != teacher.shape[0]:
    raise ValueError(
        f"student and teacher must have the same batch size, got student {student.shape} and teacher "
        f"{teacher.shape}."
    )


def _check_not_identically_zero(batch: int, k: int, anchors: str, shift: str) -> None:
  """ValueError for the configurations whose loss is 0 with gradient 0 whatever the embeddings.

  A single sample has no relations: with B = 1 every cloud is the one point S^+[0, 0] (0 under ``shift="min"``;
  under ``"affine"`` 1, or 1/2 for a zero vector), the same for student and teacher up to that zero-vector flag,
  and constant in the embeddings. With B = 2 the only anchor of a sample is the other one (k = 1), and both
  clouds are {S[0, 1], S[1, 0]}; ``shift="min"`` subtracts the global minimum of S, which is that off-diagonal
  entry, so both clouds are {0, 0}. Every other combination moves with the embeddings: B = 2 with
  ``anchors="all"`` keeps the diagonal (1 - S[0, 1] after the shift) and ``shift="affine"`` keeps S[0, 1] itself;
  for B >= 3 and k = 1 only the rows that hold the global minimum are shifted to 0.
  """
  if batch < 2:
    raise ValueError(
        f"pkdot needs B >= 2 samples (it compares within-batch relations), got B={batch} with anchors={anchors!r}; "
        f"the loss would be identically 0."
    )
  if batch == 2 and anchors != "all" and shift == "min":
    raise ValueError(
        f"pkdot with B=2, k={k}, anchors={anchors!r} and shift='min' is identically 0 with zero gradient: each "
        f"sample's only anchor is the other sample, whose similarity is the global minimum that shift='min' "
        f"subtracts. Use a larger batch, anchors='all' or shift='affine'."
    )


@register("pkdot", inputs="embeddings", returns_aux=True)
def pkdot(
    student: jax.Array,
    teacher: jax.Array,
    *,
    k: int = 30,
    anchors: relations.AnchorMode = "least_similar",
    epsilon: float = 0.01,
    shift: relations.ShiftMode = "min",
    threshold: float = ot.DEFAULT_THRESHOLD,
    max_iterations: int = ot.DEFAULT_MAX_ITERATIONS,
    implicit_diff: bool = True,
    axis_name: Hashable | Sequence[Hashable] | None = None,
    solver_options: Mapping[str, Any] | None = None,
    return_aux: bool = False,
) -> jax.Array | tuple[jax.Array, ot.SinkhornDiagnostics]:
  r"""PKDOT distillation loss between student and teacher embeddings.

  1. ``S_S``, ``S_T``: (B, B) cosine-similarity matrices of the student and teacher embeddings.
  2. Shift each to non-negative values (``shift="min"``: minus its own global minimum, differentiated as in
     the authors' code; ``"affine"``: ``(S + 1) / 2``).
  3. Anchors ``J_i`` per row chosen on the teacher's *unshifted* ``S_T`` (stop-gradient): the ``k`` least
     similar samples (authors' code), the ``k`` most similar ones (diagonal excluded) or all columns.
  4. Point clouds ``A_S[i] = S_S^+[i, J_i]``, ``A_T[i] = S_T^+[i, J_i]`` in R^k, uniform weights over the B rows.
  5. Debiased Sinkhorn divergence ``S_eps(A_S, A_T)`` with cost ``1/2 |x - y|^2`` and entropic ``epsilon``
     (:func:`pkdot_jax.losses.ot.sinkhorn_divergence`; the defaults equal the authors'
     ``geomloss.SamplesLoss("sinkhorn", p=2, blur=0.1)`` computed to convergence).

  The teacher is under ``stop_gradient``. The loss is invariant to permutations of the batch and to positive
  per-sample rescaling of either embedding, and ``pkdot(z, z) == 0``.

  Sharding: under ``jax.jit`` the inputs are global arrays and so is the loss, whatever their NamedSharding
  (Explicit-axis shardings are resharded to replicated internally). Inside ``shard_map`` pass the batch's mesh
  axis name(s) as ``axis_name``: the embeddings are all-gathered (tiled, typed invariant across the axis so the
  gradient w.r.t. each device's shard is that of the global loss, not a sum of copies) and every device
  returns the same global loss.

  Bad input: NaN or inf in either input gives a NaN value (and NaN gradient) -- enforced explicitly, never a
  finite loss. Zero vectors, identical and near-duplicate embeddings give finite values and gradients for epsilon
  in [1e-4, 1] (tests/losses/test_pkdot_properties.py, 1,008 generated problems): an over-relaxed (x, y) solve
  that blows up (about 2 in 1,000 of them, at small epsilon) is solved again with plain updates. A solve that
  does not reach ``threshold`` (in float32 the marginal error of the (x, y) solve stalls around 1e-4 to 1e-3 for
  epsilon ~1e-4, and epsilon ~1e-3 may need more than
  ``max_iterations``) returns its last finite iterate with ``aux.converged`` False; ``converged`` is never True for
  a non-finite error or value.

  Precision: bfloat16, float16 and integer embeddings are cast and everything is computed in float32; the loss is
  then float32 (float32 and float64 inputs keep their dtype, with or without ``jax_enable_x64``) and the gradient
  has the student's dtype.

  Scale: the loss depends on the embeddings through their cosines only, and each row is divided by its max-abs
  before its norm is taken, so the value is the same at any scale the dtype can hold (tested from 1e-9 to 1e20 in
  float32 against float64, tests/losses/test_loss_edge_cases.py): no |z|^2 overflow to a zero similarity, no
  tiny rows normalised by the norm guard instead of their norm. Only an exactly-zero row is special (see above).

  Identically zero configurations raise ``ValueError`` instead of returning a constant 0 that trains nothing:
  B = 1 (any ``anchors``), and B = 2 with ``anchors`` ``"least_similar"``/``"most_similar"`` (so k = 1) and
  ``shift="min"``.

  Args:
    student: (B, D_s) student embeddings (differentiated).
    teacher: (B, D_t) teacher embeddings (stop-gradient); D_t may differ from D_s.
    k: anchors per row, ``1 <= k < B`` (ignored for ``anchors="all"``). With ``axis_name``, B is the global
      batch.
    anchors: ``"least_similar"``, ``"most_similar"`` or ``"all"``.
    epsilon: entropic regularisation (``blur ** 2`` in geomloss terms); a Python float, or a traced scalar
      (e.g. vmapped over) that is then not validated.
    shift: ``"min"`` or ``"affine"``.
    threshold: Sinkhorn marginal-error tolerance of each of the three solves.
    max_iterations: iteration cap of each solve.
    implicit_diff: implicit/Danskin (True) or unrolled (False) differentiation of the solves.
    axis_name: mesh axis name(s) the batch is split over, for use inside ``shard_map``.
    solver_options: extra ``ott`` Sinkhorn options (see :func:`~pkdot_jax.losses.ot.sinkhorn_divergence`).
    return_aux: also return :class:`~pkdot_jax.losses.ot.SinkhornDiagnostics` (``converged``: bool,
      ``n_iters``: int32 (3,), ``errors``: (3,)).

  Returns:
    Scalar loss, or ``(loss, aux)`` if ``return_aux``.

  Raises:
    ValueError: wrong ranks, different batch sizes, ``k`` out of range, unknown ``anchors``/``shift``, or a
      configuration whose loss is identically zero (see above).

  References:
    Aslam, Zeeshan, Belharbi, Pedersoli, Koerich, Ben Ayed, Granger. "Distilling Privileged Multimodal
    Information for Expression Recognition using Optimal Transport." IEEE FG 2024, arXiv:2401.15489.
    Feydy et al. "Interpolating between Optimal Transport and MMD using Sinkhorn Divergences." AISTATS 2019.
  """
  _check_embeddings(student, teacher)
  if anchors not in relations.ANCHOR_MODES:
    raise ValueError(f"anchors must be one of {relations.ANCHOR_MODES}, got {anchors!r}.")
  if shift not in relations.SHIFT_MODES:
    raise ValueError(f"shift must be one of {relations.SHIFT_MODES}, got {shift!r}.")

  teacher = jax.lax.stop_gradient(teacher)
  if axis_name is not None:
    # 'invarying': the gathered array is typed as identical on every device, so the transpose of the gather
    # slices the cotangent instead of summing it over devices (which would scale gradients by the device count).
    student = jax.lax.all_gather(student, axis_name, axis=0, tiled=True, to="invarying")
    teacher = jax.lax.all_gather(teacher, axis_name, axis=0, tiled=True, to="invarying")
  else:
    student = _replicate_if_explicitly_sharded(student)
    teacher = _replicate_if_explicitly_sharded(teacher)

  batch = student.shape[0]
  if anchors != "all" and not 1 <= k < batch:
    raise ValueError(
        f"pkdot needs 1 <= k < B (k anchors per sample among the other samples), got k={k} and B={batch} "
        f"(student {student.shape}, teacher {teacher.shape}); use a smaller k, a larger batch, or "
        f"anchors='all'."
    )
  _check_not_identically_zero(batch, k, anchors, shift)
  # Half precision in, float32 inside (cosines and the OT solves; see Returns).
  dtype = jnp.promote_types(jnp.result_type(student, teacher), jnp.float32)
  student, teacher = student.astype(dtype), teacher.astype(dtype)

  student_cloud, teacher_cloud = point_clouds(student, teacher, k=k, anchors=anchors, shift=shift)
  value, aux = ot.sinkhorn_divergence(
      student_cloud,
      teacher_cloud,
      epsilon=epsilon,
      threshold=threshold,
      max_iterations=max_iterations,
      implicit_diff=implicit_diff,
      solver_options=solver_options,
      return_aux=True,
  )
  # The solver stops on a non-finite error and returns whatever it has; make "NaN in, NaN out" a guarantee.
  inputs_finite = jnp.logical_and(jnp.all(jnp.isfinite(student)), jnp.all(jnp.isfinite(teacher)))
  value = jnp.where(inputs_finite, value, jnp.nan)
  if return_aux:
    return value, aux._replace(converged=jnp.logical_and(aux.converged, inputs_finite))
  return value


def point_clouds(student: jax.Array, teacher: jax.Array, *, k: int, anchors: relations.AnchorMode,
                 shift: relations.ShiftMode) -> tuple[jax.Array, jax.Array]:
  """The two point clouds PKDOT compares (steps 1-3 of :func:`pkdot`): each sample's shifted cosine
  similarities to its k anchors, chosen on the teacher; (B, k) each, or (B, B) with ``anchors="all"``."""
  teacher_similarity = relations.cosine_similarity_matrix(teacher)
  student_similarity = relations.cosine_similarity_matrix(student)
  teacher_shifted = relations.shift_similarity(teacher_similarity, shift)
  student_shifted = relations.shift_similarity(student_similarity, shift)
  if anchors == "all":
    return student_shifted, teacher_shifted
  anchor_indices = relations.select_anchors(teacher_similarity, k, anchors)
  return (relations.gather_anchors(student_shifted, anchor_indices),
          relations.gather_anchors(teacher_shifted, anchor_indices))
