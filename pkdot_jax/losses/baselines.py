"""Baseline knowledge-distillation losses, as pure functions with ``(student, teacher, ...)`` argument order.

Every function stops the gradient into the teacher, reduces to a scalar, computes bfloat16/float16 inputs in
float32 (and then returns a float32 scalar), and follows the normalisation of its paper; where the widely used
implementations (RepDistiller, torchdistill, the authors' code) normalise
differently, the docstring says so.

Input contract, common to all (tests/losses/test_loss_edge_cases.py checks it over scales, dtypes, minimum shapes
and labels against float64): integer and bool inputs are computed in float32 (never in integer arithmetic);
NaN or inf in student or teacher gives a NaN loss, never a finite one. The scale-invariant losses (``pkt``,
``rkd``, ``sp``, ``cc``, ``nst``, ``privileged_cosine``, ``mmd`` with its default bandwidths) divide by a
max-abs first, so their value is the same at any input scale the dtype holds as normal numbers (tested from
1e-9 to 1e20 in float32); their norm guards act on exactly-zero vectors only. The quadratic feature losses (``fitnets``,
``feature_mse``, ``mars``) return inf only when the value itself exceeds the float range. The logit losses
check concrete labels against the number of classes (ValueError); under ``jax.jit`` an out-of-range label gives
a NaN loss. Shapes without relations to compare (B or D too small: the loss would be identically zero or
undefined) raise a ValueError naming the loss.
"""

from __future__ import annotations

import functools
from typing import Callable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax.losses.registry import register

__all__ = [
    "hinton_kd",
    "fitnets",
    "feature_mse",
    "pkt",
    "rkd",
    "sp",
    "cc",
    "dkd",
    "nst",
    "mmd",
    "generalized_distillation",
    "privileged_cosine",
    "mars",
]

_EPS = 1e-8
_HIGHEST = jax.lax.Precision.HIGHEST


# ---------------------------------------------------------------------------------------------------- checks


def _as_float(x):
  """bfloat16/float16/integer/bool arrays as float32; float32 and float64 (and non-arrays) unchanged."""
  if isinstance(x, jax.Array) or hasattr(x, "dtype"):
    dtype = jnp.dtype(x.dtype)
    if dtype in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)) or not jnp.issubdtype(dtype, jnp.floating):
      return jnp.asarray(x, jnp.float32)
  return x


def _half_in_float32(fn: Callable) -> Callable:
  """Student and teacher in bfloat16/float16 or an integer dtype are cast to float32, so the loss is computed and
  returned in float32; NaN or inf in either gives a NaN loss.

  Mixed-precision models may hand half-precision activations to a loss directly; the norm guards (1e-8 squared),
  softmax temperatures and B^2/B^3 means here underflow or lose the loss's digits in 8 or 11 mantissa bits (RKD
  in float16 gave NaN). Integer inputs would otherwise be squared and summed in integer arithmetic (overflow) or
  have the result cast back to int. Gradients come back in the inputs' dtype. Labels (the third argument) and
  float32/float64 arrays are unchanged. The NaN guard matters where a loss masks terms (``where(p > 0, ...)``):
  inf logits would otherwise give a finite 0.
  """

  @functools.wraps(fn)
  def wrapped(student, teacher, *args, **kwargs):
    student, teacher = _as_float(student), _as_float(teacher)
    value = fn(student, teacher, *args, **kwargs)
    finite = jnp.logical_and(jnp.all(jnp.isfinite(student)), jnp.all(jnp.isfinite(teacher)))
    return jnp.where(finite, value, jnp.nan)

  return wrapped


def _check_pair(student: jax.Array, teacher: jax.Array, *, rank: int | None = 2, same_shape: bool = False,
                min_rank: int | None = None) -> None:
  for name, x in (("student", student), ("teacher", teacher)):
    if rank is not None and jnp.ndim(x) != rank:
      raise ValueError(f"{name} must be a {rank}-D array, got shape {jnp.shape(x)}.")
    if min_rank is not None and jnp.ndim(x) < min_rank:
      raise ValueError(f"{name} must have at least {min_rank} dimensions, got shape {jnp.shape(x)}.")
  if same_shape and jnp.shape(student) != jnp.shape(teacher):
    raise ValueError(
        f"student and teacher must have the same shape, got student {jnp.shape(student)} and teacher "
        f"{jnp.shape(teacher)}."
    )
  if jnp.shape(student)[0] != jnp.shape(teacher)[0]:
    raise ValueError(
        f"student and teacher must have the same batch size, got student {jnp.shape(student)} and teacher "
        f"{jnp.shape(teacher)}."
    )


def _check_labels(labels: jax.Array, logits: jax.Array, loss: str) -> jax.Array:
  """Shape, dtype and (for concrete labels) range checks; returns whether every label is in [0, C), a traced
  bool under ``jax.jit``, which the caller turns into a NaN loss (one_hot and take_along_axis would silently
  give a zero row or clamp to a valid class)."""
  if jnp.shape(labels) != (logits.shape[0],):
    raise ValueError(
        f"{loss}: labels must be a ({logits.shape[0]},) integer array matching logits {logits.shape}, got shape "
        f"{jnp.shape(labels)}."
    )
  if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
    raise ValueError(f"{loss}: labels must be integer class ids, got dtype {jnp.asarray(labels).dtype}.")
  num_classes = logits.shape[-1]
  if not isinstance(labels, jax.core.Tracer):
    concrete = np.asarray(labels)
    if concrete.size and (concrete.min() < 0 or concrete.max() >= num_classes):
      raise ValueError(
          f"{loss}: labels must be class ids in [0, {num_classes}) for logits {logits.shape} ({num_classes} "
          f"classes), got labels in [{concrete.min()}, {concrete.max()}]."
      )
  return jnp.all(jnp.logical_and(labels >= 0, labels < num_classes))


def _check_at_least(loss: str, what: str, size: int, minimum: int, x: jax.Array, why: str) -> None:
  if size < minimum:
    raise ValueError(f"{loss} needs {what} >= {minimum}, got {what}={size} (shape {jnp.shape(x)}): {why}.")


def _check_classes(loss: str, logits: jax.Array) -> None:
  _check_at_least(loss, "C", logits.shape[-1], 2, logits, "a single class has no distribution to distil "
                  "(the loss would be identically 0)")


def _flatten(x: jax.Array) -> jax.Array:
  return jnp.reshape(x, (x.shape[0], -1))


def _by_peak(x: jax.Array, axis: int | None = None) -> jax.Array:
  """``x`` divided by its max-abs along ``axis`` (all axes for None; an all-zero slice is left as is).

  For functions invariant to that rescaling (unit vectors, distances over their mean) this is the same function
  without overflow (|x|^2 of 1e20 is inf in float32) or underflow into the norm guards (a 1e-9 vector would
  be normalised by the guard 1e-8, not its norm). The peak is under stop_gradient: the function does not
  depend on it, so the gradient is exact."""
  peak = jax.lax.stop_gradient(jnp.max(jnp.abs(x), axis=axis, keepdims=True))
  return x / jnp.where(peak > 0, peak, 1.0)


def _unit_rows(x: jax.Array) -> jax.Array:
  # After _by_peak a non-zero row has |x| >= 1: the guard only acts on exactly-zero rows (which stay 0).
  x = _by_peak(x, axis=-1)
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x / jnp.sqrt(jnp.maximum(sq, _EPS * _EPS))


def _safe_norm(x: jax.Array, axis: int = -1) -> jax.Array:
  # sqrt(max(., eps^2)): finite gradient at exactly-zero vectors (the diagonal of a distance matrix). The guard
  # is absolute: callers pass inputs scaled by _by_peak.
  return jnp.sqrt(jnp.maximum(jnp.sum(x * x, axis=axis), _EPS * _EPS))


def _reduced_squares(diff: jax.Array, reduce: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """``reduce(diff ** 2)`` that overflows only if the result does: the squares of ``diff`` over its max-abs are
  reduced, then scaled back as ``peak * (peak * r)`` (inf only when the value exceeds the float range; squaring
  first overflows float32 from |diff| ~ 2e19)."""
  peak = jax.lax.stop_gradient(jnp.max(jnp.abs(diff)))
  peak = jnp.where(peak > 0, peak, 1.0)
  return peak * (peak * reduce((diff / peak) ** 2))


def _sq_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  # Direct differences (not the |x|^2 + |y|^2 - 2xy expansion) so that near-duplicates are not swamped by
  # cancellation; the baselines run at small B, where the (B, B, D) intermediate is cheap.
  return jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)


def _kl_rows(p_log: jax.Array, q_log: jax.Array) -> jax.Array:
  """KL(p || q) per row from log-probabilities, with 0 log 0 = 0."""
  p = jnp.exp(p_log)
  return jnp.sum(jnp.where(p > 0, p * (p_log - q_log), 0.0), axis=-1)


# ---------------------------------------------------------------------------------------------------- logits


@register("hinton_kd", inputs="logits", same_dim=True, tasks=("classification",))
@_half_in_float32
def hinton_kd(student: jax.Array, teacher: jax.Array, *, temperature: float = 4.0) -> jax.Array:
  r"""Hinton knowledge distillation: ``T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T))``.

  The ``T^2`` factor keeps the gradient scale independent of the temperature, as Hinton et al. recommend;
  the KL is summed over classes and averaged over the batch (PyTorch's ``KLDivLoss(reduction="batchmean")``).

  Args:
    student: (B, C) student logits.
    teacher: (B, C) teacher logits.
    temperature: softening temperature T > 0.

  Returns:
    Scalar loss (not scale-invariant: logits are compared as given).

  Raises:
    ValueError: fewer than 2 classes.

  References:
    Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural Network." NIPS workshop 2015,
    arXiv:1503.02531.
  """
  _check_pair(student, teacher, same_shape=True)
  _check_classes("hinton_kd", student)
  teacher = jax.lax.stop_gradient(teacher)
  t_log = jax.nn.log_softmax(teacher / temperature, axis=-1)
  s_log = jax.nn.log_softmax(student / temperature, axis=-1)
  return temperature**2 * jnp.mean(_kl_rows(t_log, s_log))


@register("dkd", inputs="logits", needs_labels=True, same_dim=True, tasks=("classification",))
@_half_in_float32
def dkd(student: jax.Array, teacher: jax.Array, labels: jax.Array, *, alpha: float = 1.0, beta: float = 8.0,
        temperature: float = 4.0) -> jax.Array:
  r"""Decoupled knowledge distillation: ``T^2 (alpha TCKD + beta NCKD)``, averaged over the batch.

  With ``p = softmax(z / T)`` and the target class ``y``:
  TCKD = KL([p^T_y, 1 - p^T_y] || [p^S_y, 1 - p^S_y]) (binary target vs. rest), and
  NCKD = KL(softmax(z^T_{not y} / T) || softmax(z^S_{not y} / T)) over the non-target classes.
  The paper's warm-up of the loss weight over the first epochs is the trainer's business.

  Args:
    student: (B, C) student logits.
    teacher: (B, C) teacher logits.
    labels: (B,) integer target classes.
    alpha: TCKD weight.
    beta: NCKD weight (8 on CIFAR-100 in the paper).
    temperature: T.

  Returns:
    Scalar loss; NaN under ``jax.jit`` if a label is outside [0, C).

  Raises:
    ValueError: fewer than 2 classes, or concrete labels outside [0, C) (naming the range found).

  References:
    Zhao, Cui, Song, Qiu, Liang. "Decoupled Knowledge Distillation." CVPR 2022.
  """
  _check_pair(student, teacher, same_shape=True)
  _check_classes("dkd", student)
  labels_valid = _check_labels(labels, student, "dkd")
  teacher = jax.lax.stop_gradient(teacher)
  num_classes = student.shape[-1]
  target = jax.nn.one_hot(labels, num_classes, dtype=bool)

  def binary_log(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits / temperature, axis=-1)
    log_target = jnp.sum(jnp.where(target, log_p, 0.0), axis=-1)
    # log(1 - p_y) as the log-sum-exp of the non-target log-probabilities: exact when p_y -> 1.
    log_rest = jax.nn.logsumexp(jnp.where(target, -jnp.inf, log_p), axis=-1)
    return jnp.stack([log_target, log_rest], axis=-1)

  def non_target_log(logits: jax.Array) -> jax.Array:
    masked = jnp.where(target, -jnp.inf, logits / temperature)
    return jax.nn.log_softmax(masked, axis=-1)

  tckd = _kl_rows(binary_log(teacher), binary_log(student))
  # The target column is -inf in both; replace it before subtracting (-inf - -inf is NaN) and drop it.
  t_nt = jnp.where(target, 0.0, non_target_log(teacher))
  s_nt = jnp.where(target, 0.0, non_target_log(student))
  nckd = jnp.sum(jnp.where(target, 0.0, jnp.exp(t_nt) * (t_nt - s_nt)), axis=-1)
  return jnp.where(labels_valid, temperature**2 * jnp.mean(alpha * tckd + beta * nckd), jnp.nan)


@register("generalized_distillation", inputs="logits", needs_labels=True, same_dim=True, tasks=("classification",))
@_half_in_float32
def generalized_distillation(student: jax.Array, teacher: jax.Array, labels: jax.Array, *,
                             imitation: float = 0.5, temperature: float = 1.0) -> jax.Array:
  r"""Generalized distillation (distillation + learning using privileged information).

  ``mean_i [(1 - lambda) CE(y_i, softmax(f_s(x_i))) + lambda CE(s_i, softmax(f_s(x_i)))]`` with the soft
  labels ``s_i = softmax(f_t(x*_i) / T)`` of a teacher trained on the privileged input. As in the paper's
  eq. (7), only the teacher is softened (the student enters both terms at temperature 1) and there is no
  ``T^2`` factor. This is the *whole* objective: it contains the hard-label term, so use it without a separate
  task loss. ``lambda`` is the imitation parameter.

  Args:
    student: (B, C) student logits.
    teacher: (B, C) teacher (privileged) logits.
    labels: (B,) integer targets.
    imitation: lambda in [0, 1].
    temperature: T > 0 for the teacher's soft labels.

  Returns:
    Scalar loss; NaN under ``jax.jit`` if a label is outside [0, C).

  Raises:
    ValueError: fewer than 2 classes, or concrete labels outside [0, C) (naming the range found).

  References:
    Lopez-Paz, Bottou, Schölkopf, Vapnik. "Unifying distillation and privileged information." ICLR 2016.
  """
  _check_pair(student, teacher, same_shape=True)
  _check_classes("generalized_distillation", student)
  labels_valid = _check_labels(labels, student, "generalized_distillation")
  if not 0.0 <= imitation <= 1.0:
    raise ValueError(f"imitation must be in [0, 1], got {imitation!r}.")
  teacher = jax.lax.stop_gradient(teacher)
  s_log = jax.nn.log_softmax(student, axis=-1)
  soft = jax.nn.softmax(teacher / temperature, axis=-1)
  hard_ce = -jnp.take_along_axis(s_log, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]
  soft_ce = -jnp.sum(soft * s_log, axis=-1)
  return jnp.where(labels_valid, jnp.mean((1.0 - imitation) * hard_ce + imitation * soft_ce), jnp.nan)


# ---------------------------------------------------------------------------------------------------- features


@register("fitnets", inputs="embeddings", same_dim=True)
@_half_in_float32
def fitnets(student: jax.Array, teacher: jax.Array) -> jax.Array:
  r"""FitNets hint loss ``1/2 |u_i - r(v_i)|^2``, summed over features and averaged over the batch.

  ``student`` is the output of the caller's regressor ``r`` on the guided layer (the regressor belongs to the
  student model). The paper's 1/2 and sum over features are kept; common implementations use
  ``F.mse_loss`` (mean over all elements, no 1/2): that is :func:`feature_mse`.

  Args:
    student: (B, ...) regressed student features.
    teacher: (B, ...) teacher hint features, same shape.

  Returns:
    Scalar loss, s^2 times its value at scale 1 for inputs scaled by s; inf only when that exceeds the
    float range (the squares are taken of the differences over their max-abs).

  References:
    Romero, Ballas, Kahou, Chassang, Gatta, Bengio. "FitNets: Hints for Thin Deep Nets." ICLR 2015.
  """
  _check_pair(student, teacher, rank=None, min_rank=1, same_shape=True)
  teacher = jax.lax.stop_gradient(teacher)
  return _reduced_squares(_flatten(student - teacher), lambda sq: 0.5 * jnp.mean(jnp.sum(sq, axis=-1)))


@register("feature_mse", inputs="embeddings", same_dim=True)
@_half_in_float32
def feature_mse(student: jax.Array, teacher: jax.Array) -> jax.Array:
  """Mean squared error over all elements (the common FitNets implementation, ``F.mse_loss``).

  Args:
    student: (B, ...) student features.
    teacher: (B, ...) teacher features, same shape.

  Returns:
    Scalar loss, s^2 times its value at scale 1 for inputs scaled by s; inf only when that exceeds the
    float range (the squares are taken of the differences over their max-abs).

  References:
    Romero et al. "FitNets: Hints for Thin Deep Nets." ICLR 2015 (see :func:`fitnets` for the paper's scale).
  """
  _check_pair(student, teacher, rank=None, min_rank=1, same_shape=True)
  teacher = jax.lax.stop_gradient(teacher)
  return _reduced_squares(student - teacher, jnp.mean)


@register("mars", inputs="embeddings", same_dim=True)
@_half_in_float32
def mars(student: jax.Array, teacher: jax.Array) -> jax.Array:
  r"""MARS feature regression: ``mean_i |f_RGB(x_i) - f_Flow(x_i)|^2`` (squared L2 over features).

  The student (RGB stream) regresses the frozen teacher's features (optical flow in MARS; here the
  privileged stream). The paper writes the loss as the squared Euclidean distance of the feature vectors,
  weighted by alpha (the caller's weight, 50 in the paper); the released code uses ``nn.MSELoss``, i.e.
  additionally divides by the feature dimension D (equivalent to rescaling alpha by 1/D).

  Args:
    student: (B, ...) student features.
    teacher: (B, ...) teacher features, same shape.

  Returns:
    Scalar loss, s^2 times its value at scale 1 for inputs scaled by s; inf only when that exceeds the
    float range (the squares are taken of the differences over their max-abs).

  References:
    Crasto, Weinzaepfel, Alahari, Schmid. "MARS: Motion-Augmented RGB Stream for Action Recognition."
    CVPR 2019.
  """
  _check_pair(student, teacher, rank=None, min_rank=1, same_shape=True)
  teacher = jax.lax.stop_gradient(teacher)
  return _reduced_squares(_flatten(student - teacher), lambda sq: jnp.mean(jnp.sum(sq, axis=-1)))


@register("privileged_cosine", inputs="embeddings", same_dim=True)
@_half_in_float32
def privileged_cosine(student: jax.Array, teacher: jax.Array) -> jax.Array:
  r"""``1 - cos(vec(S), vec(T))``: cosine between the whole flattened batch tensors (one scalar, not per sample).

  Args:
    student: (B, ...) student features.
    teacher: (B, ...) teacher features, same shape.

  Returns:
    Scalar in [0, 2], the same at any input scale.

  References:
    Aslam, Zeeshan, Pedersoli, Koerich, Ben Ayed, Granger. "Privileged Knowledge Distillation for Dimensional
    Emotion Recognition in the Wild." CVPR Workshops (ABAW) 2023.
  """
  _check_pair(student, teacher, rank=None, min_rank=1, same_shape=True)
  teacher = jax.lax.stop_gradient(teacher)
  s = _by_peak(jnp.ravel(student))
  t = _by_peak(jnp.ravel(teacher))
  return 1.0 - jnp.vdot(s, t, precision=_HIGHEST) / (_safe_norm(s, axis=0) * _safe_norm(t, axis=0))


@register("pkt", inputs="embeddings")
@_half_in_float32
def pkt(student: jax.Array, teacher: jax.Array, *, reduction: Literal["sum", "mean"] = "sum") -> jax.Array:
  r"""Probabilistic knowledge transfer with the cosine kernel.

  ``K(a, b) = (cos(a, b) + 1) / 2``, conditional probabilities ``p_{j|i} = K(x_i, x_j) / sum_{l != i}
  K(x_i, x_l)`` for ``j != i``, loss ``sum_i sum_{j != i} p^T_{j|i} log(p^T_{j|i} / p^S_{j|i})`` (paper,
  eq. 9-10: diagonal excluded, summed over the batch). ``reduction="mean"`` divides by B. RepDistiller's
  implementation keeps the diagonal in the normalisation and averages over all B^2 entries.

  Args:
    student: (B, D_s) student features.
    teacher: (B, D_t) teacher features.
    reduction: ``"sum"`` (paper) or ``"mean"`` over the B rows.

  Returns:
    Scalar loss, the same at any input scale (cosines). Exactly antipodal rows give a kernel of 0, whose log is
    floored at 1e-30 (finite where the divergence is infinite; a measure-zero event for D >= 2).

  Raises:
    ValueError: B < 3 (at most one neighbour per row: identically 0) or D = 1 for either input (1-D cosines are
      +-1, so the kernel is 0 or 1 and the divergence infinite or 0).

  References:
    Passalis, Tefas. "Learning Deep Representations with Probabilistic Knowledge Transfer." ECCV 2018.
  """
  _check_pair(student, teacher)
  if reduction not in ("sum", "mean"):
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}.")
  _check_at_least("pkt", "B", student.shape[0], 3, student, "with fewer than 3 samples each conditional "
                  "distribution has at most one outcome and the loss is identically 0")
  for name, x in (("student", student), ("teacher", teacher)):
    _check_at_least("pkt", f"{name} D", x.shape[1], 2, x, "1-D cosines are +-1, the cosine kernel is 0 or 1 "
                    "and the divergence is infinite or 0")
  teacher = jax.lax.stop_gradient(teacher)
  off_diagonal = ~jnp.eye(student.shape[0], dtype=bool)

  def conditional(x: jax.Array) -> jax.Array:
    unit = _unit_rows(x)
    kernel = 0.5 * (jnp.matmul(unit, unit.T, precision=_HIGHEST) + 1.0)
    kernel = jnp.where(off_diagonal, kernel, 0.0)
    return kernel / jnp.maximum(jnp.sum(kernel, axis=-1, keepdims=True), _EPS)

  p_t, p_s = conditional(teacher), conditional(student)
  # K >= 0 can be exactly 0 for antipodal vectors: 0 log 0 = 0, and a tiny floor keeps log(p_s) finite.
  terms = jnp.where(p_t > 0, p_t * (jnp.log(jnp.maximum(p_t, 1e-30)) - jnp.log(jnp.maximum(p_s, 1e-30))), 0.0)
  per_row = jnp.sum(jnp.where(off_diagonal, terms, 0.0), axis=-1)
  return jnp.sum(per_row) if reduction == "sum" else jnp.mean(per_row)


def _huber(x: jax.Array) -> jax.Array:
  abs_x = jnp.abs(x)
  return jnp.where(abs_x < 1.0, 0.5 * x * x, abs_x - 0.5)


@register("rkd", inputs="embeddings")
@_half_in_float32
def rkd(student: jax.Array, teacher: jax.Array, *, distance_weight: float = 25.0,
        angle_weight: float = 50.0) -> jax.Array:
  r"""Relational knowledge distillation: distance-wise plus angle-wise terms with the Huber loss (delta = 1).

  Distance: ``psi_D(i, j) = |x_i - x_j| / mu`` with ``mu`` the mean distance over pairs ``i != j``.
  Angle: ``psi_A(i, j, k) = <e_ij, e_kj>``, ``e_ij = (x_i - x_j) / |x_i - x_j|`` (cosine of the angle at j).
  Loss ``distance_weight * mean_{i,j} huber(psi_D^S - psi_D^T) + angle_weight * mean_{i,j,k} huber(psi_A^S -
  psi_A^T)``. The paper's equations write sums over pairs/triplets, but its released code (whose weights 25
  and 50 we use) averages over all B^2 pairs and B^3 triplets (degenerate ones contribute 0): we average, so
  the published weights apply.

  Args:
    student: (B, D_s) student embeddings.
    teacher: (B, D_t) teacher embeddings.
    distance_weight: weight of the distance term (paper: 25).
    angle_weight: weight of the angle term (paper: 50).

  Returns:
    Scalar loss, the same at any input scale (distances over their mean, angles). The angle term builds a
    (B, B, B) tensor: meant for B up to a few hundred.

  Raises:
    ValueError: B < 3 (B = 1 has no pair, B = 2 gives identically 0).

  References:
    Park, Kim, Lu, Cho. "Relational Knowledge Distillation." CVPR 2019.
  """
  _check_pair(student, teacher)
  _check_at_least("rkd", "B", student.shape[0], 3, student, "B=1 has no pair (the mean distance is 0/0) and with "
                  "B=2 both potentials are constant, so the loss is identically 0")
  teacher = jax.lax.stop_gradient(teacher)
  batch = student.shape[0]
  off_diagonal = ~jnp.eye(batch, dtype=bool)
  # Distances over their mean and unit difference vectors are invariant to the embeddings' scale: both are
  # computed from the differences over their max-abs (differences first, so that x_i - x_i is exactly 0; scaling
  # x first let a fused multiply-add leave ~1e-8 on the diagonal under jit, a spurious direction).

  def distance_potential(x: jax.Array) -> jax.Array:
    diff = _by_peak(x[:, None, :] - x[None, :, :])
    dist = jnp.where(off_diagonal, _safe_norm(diff), 0.0)
    mean_dist = jnp.sum(dist) / (batch * (batch - 1))
    return dist / jnp.maximum(mean_dist, _EPS)

  def angle_potential(x: jax.Array) -> jax.Array:
    unit = _unit_rows(x[:, None, :] - x[None, :, :])  # unit[i, j] = (x_i - x_j) / |x_i - x_j|, 0 for i = j
    return jnp.einsum("ijd,kjd->ijk", unit, unit, precision=_HIGHEST)

  loss: jax.Array | float = 0.0
  if distance_weight:
    loss = loss + distance_weight * jnp.mean(_huber(distance_potential(student) - distance_potential(teacher)))
  if angle_weight:
    loss = loss + angle_weight * jnp.mean(_huber(angle_potential(student) - angle_potential(teacher)))
  return jnp.asarray(loss, student.dtype)


@register("sp", inputs="embeddings")
@_half_in_float32
def sp(student: jax.Array, teacher: jax.Array) -> jax.Array:
  r"""Similarity-preserving KD: ``1/B^2 |G~_T - G~_S|_F^2`` with ``G = Q Q^T`` row-wise L2-normalised.

  ``Q`` is the (B, -1) flattened activation. Same normalisation as the paper (eq. 2-4) and as RepDistiller's
  ``F.mse_loss`` on the normalised Gram matrices; the sum over layer pairs is the caller's.

  Args:
    student: (B, ...) student activations.
    teacher: (B, ...) teacher activations.

  Returns:
    Scalar loss, the same at any input scale (row-normalised Gram matrices).

  Raises:
    ValueError: B = 1 (a 1 x 1 Gram matrix normalises to 1: identically 0).

  References:
    Tung, Mori. "Similarity-Preserving Knowledge Distillation." ICCV 2019.
  """
  _check_pair(student, teacher, rank=None, min_rank=2)
  _check_at_least("sp", "B", student.shape[0], 2, student, "a 1 x 1 Gram matrix normalises to 1 and the loss is "
                  "identically 0")
  teacher = jax.lax.stop_gradient(teacher)

  def gram(x: jax.Array) -> jax.Array:
    q = _by_peak(_flatten(x))  # the normalised Gram matrix is scale-invariant; this keeps Q Q^T in range
    return _unit_rows(jnp.matmul(q, q.T, precision=_HIGHEST))

  return jnp.mean((gram(student) - gram(teacher)) ** 2)


@register("cc", inputs="embeddings")
@_half_in_float32
def cc(student: jax.Array, teacher: jax.Array, *,
       kernel: Literal["gaussian_taylor", "gaussian", "bilinear"] = "gaussian_taylor",
       gamma: float = 0.4, order: int = 2) -> jax.Array:
  r"""Correlation congruence: ``1/B^2 |psi(F_T) - psi(F_S)|_F^2`` with ``psi(F)_ij = k(f_i, f_j)``.

  Default: the paper's Gaussian RBF kernel on L2-normalised embeddings, approximated by its order-P Taylor
  series ``k(x, y) ~ sum_{p=0}^{P} exp(-2 gamma) (2 gamma)^p / p! (x . y)^p`` (exact for unit vectors as
  P -> inf; the paper uses P = 2, gamma = 0.4). ``kernel="gaussian"`` evaluates ``exp(-gamma |x - y|^2)`` on
  the normalised embeddings exactly; ``"bilinear"`` uses ``x . y``. RepDistiller's ``Correlation`` loss is a
  different surrogate (a correlation of the feature *differences* of consecutive samples) and is not offered.
  The paper's embeddings pass through a linear projection of the student to the teacher's dimension
  beforehand; that belongs to the caller's model (the kernel compares samples, so dimensions may differ).

  Args:
    student: (B, D_s) student embeddings.
    teacher: (B, D_t) teacher embeddings.
    kernel: ``"gaussian_taylor"`` (paper), ``"gaussian"`` or ``"bilinear"``.
    gamma: RBF parameter.
    order: Taylor order P.

  Returns:
    Scalar loss, the same at any input scale (normalised embeddings).

  Raises:
    ValueError: B = 1 (identically 0).

  References:
    Peng, Jin, Liu, Li, Wu, Liu, Zhou, Zhang. "Correlation Congruence for Knowledge Distillation." ICCV 2019.
  """
  _check_pair(student, teacher)
  if kernel not in ("gaussian_taylor", "gaussian", "bilinear"):
    raise ValueError(f"kernel must be 'gaussian_taylor', 'gaussian' or 'bilinear', got {kernel!r}.")
  _check_at_least("cc", "B", student.shape[0], 2, student, "one sample's correlation with itself is constant and "
                  "the loss is identically 0")
  teacher = jax.lax.stop_gradient(teacher)

  def correlation(x: jax.Array) -> jax.Array:
    unit = _unit_rows(x)
    inner = jnp.matmul(unit, unit.T, precision=_HIGHEST)
    if kernel == "bilinear":
      return inner
    if kernel == "gaussian":
      return jnp.exp(-gamma * jnp.maximum(2.0 - 2.0 * inner, 0.0))
    total = jnp.zeros_like(inner)
    coefficient = jnp.exp(-2.0 * gamma)
    for p in range(order + 1):
      total = total + coefficient * inner**p
      coefficient = coefficient * 2.0 * gamma / (p + 1)
    return total

  return jnp.mean((correlation(teacher) - correlation(student)) ** 2)


def _mmd2_from_kernels(k_ss: jax.Array, k_tt: jax.Array, k_st: jax.Array) -> jax.Array:
  return jnp.mean(k_ss) + jnp.mean(k_tt) - 2.0 * jnp.mean(k_st)


@register("nst", inputs="feature_maps")
@_half_in_float32
def nst(student: jax.Array, teacher: jax.Array, *, degree: int = 2, offset: float = 0.0) -> jax.Array:
  r"""Neuron selectivity transfer: squared MMD between the channels' activation patterns, polynomial kernel.

  For each example the C channels of a channels-last map (B, H, W, C) are C samples in R^{HW}, each L2-
  normalised; ``MMD^2 = mean k(t, t') + mean k(s, s') - 2 mean k(t, s)`` with ``k(x, y) = (x . y + c)^d``
  (the paper's choice: d = 2, c = 0), averaged over the batch. Student and teacher may have different numbers
  of channels but the same spatial size.

  Args:
    student: (B, ..., C_s) channels-last student feature maps (at least 3-D).
    teacher: (B, ..., C_t) teacher feature maps with the same spatial shape.
    degree: polynomial degree d.
    offset: polynomial offset c.

  Returns:
    Scalar loss, the same at any input scale (channel patterns are normalised).

  References:
    Huang, Wang. "Like What You Like: Knowledge Distill via Neuron Selectivity Transfer." arXiv:1707.01219,
    2017.
  """
  _check_pair(student, teacher, rank=None, min_rank=3)
  if student.shape[1:-1] != teacher.shape[1:-1]:
    raise ValueError(
        f"student and teacher must have the same spatial shape (all axes but batch and channels), got "
        f"student {student.shape} and teacher {teacher.shape}."
    )
  teacher = jax.lax.stop_gradient(teacher)

  def channels(x: jax.Array) -> jax.Array:  # (B, C, M), each channel's pattern normalised over positions
    x = jnp.reshape(x, (x.shape[0], -1, x.shape[-1]))
    return _unit_rows(jnp.swapaxes(x, 1, 2))

  s, t = channels(student), channels(teacher)

  def kernel(a: jax.Array, b: jax.Array) -> jax.Array:
    return (jnp.einsum("bim,bjm->bij", a, b, precision=_HIGHEST) + offset) ** degree

  per_example = jax.vmap(_mmd2_from_kernels)(kernel(s, s), kernel(t, t), kernel(s, t))
  return jnp.mean(per_example)


@register("mmd", inputs="embeddings", same_dim=True)
@_half_in_float32
def mmd(student: jax.Array, teacher: jax.Array, *, bandwidths: Sequence[float] | None = None,
        kernel_mul: float = 2.0, kernel_num: int = 5) -> jax.Array:
  r"""Multi-kernel Gaussian MMD^2 between the student and teacher batches viewed as samples of distributions.

  ``k(x, y) = sum_l exp(-|x - y|^2 / s_l)``, biased (V-statistic) estimate
  ``mean K_SS + mean K_TT - 2 mean K_ST`` (Gretton et al. 2012, eq. 5). ``bandwidths`` gives the ``s_l``
  (= 2 sigma_l^2) explicitly; by default they follow DAN (Long et al. 2015): ``kernel_num`` values
  ``s_0 * kernel_mul^(l - kernel_num // 2)`` around ``s_0`` = the mean squared distance over distinct pairs of
  the pooled sample, under stop-gradient.

  Args:
    student: (B, D) student embeddings.
    teacher: (B, D) teacher embeddings (same D).
    bandwidths: optional explicit ``s_l`` values.
    kernel_mul: ratio between consecutive default bandwidths.
    kernel_num: number of default bandwidths.

  Returns:
    Scalar MMD^2 (>= 0 up to rounding). With the default bandwidths the same at any common scale of student and
    teacher (computed at max-abs 1); explicit ``bandwidths`` fix the length scale, so the value then depends on it.

  Raises:
    ValueError: B = 1 with the default bandwidths (the mean distance of the only pair: the same value for every
      input).

  References:
    Gretton, Borgwardt, Rasch, Schölkopf, Smola. "A Kernel Two-Sample Test." JMLR 2012.
    Long, Cao, Wang, Jordan. "Learning Transferable Features with Deep Adaptation Networks." ICML 2015.
  """
  _check_pair(student, teacher, same_shape=True)
  teacher = jax.lax.stop_gradient(teacher)
  if bandwidths is None:
    _check_at_least("mmd", "B", student.shape[0], 2, student, "with the default bandwidth (the mean distance) "
                    "one student and one teacher sample give the same value for any input")
    # Invariant to a common scale of both batches with the default bandwidths: compute at max-abs 1.
    peak = jax.lax.stop_gradient(jnp.maximum(jnp.max(jnp.abs(student)), jnp.max(jnp.abs(teacher))))
    peak = jnp.where(peak > 0, peak, 1.0)
    student, teacher = student / peak, teacher / peak
  d_ss = _sq_distances(student, student)
  d_tt = _sq_distances(teacher, teacher)
  d_st = _sq_distances(student, teacher)
  if bandwidths is None:
    n = 2 * student.shape[0]
    pooled_sum = jnp.sum(d_ss) + jnp.sum(d_tt) + 2.0 * jnp.sum(d_st)
    base = jax.lax.stop_gradient(pooled_sum / (n * n - n))
    scales = jnp.asarray([kernel_mul ** (l - kernel_num // 2) for l in range(kernel_num)], student.dtype)
    bandwidth_values = jnp.maximum(base, _EPS) * scales
  else:
    if len(bandwidths) == 0 or any(b <= 0 for b in bandwidths):
      raise ValueError(f"bandwidths must be a non-empty sequence of positive numbers, got {bandwidths!r}.")
    bandwidth_values = jnp.asarray(bandwidths, student.dtype)

  def kernel(d: jax.Array) -> jax.Array:
    return jnp.sum(jnp.exp(-d[..., None] / bandwidth_values), axis=-1)

  return _mmd2_from_kernels(kernel(d_ss), kernel(d_tt), kernel(d_st))
