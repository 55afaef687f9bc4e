"""Edge-case grid for every registered loss: input scales, dtypes, minimum shapes and out-of-range labels.

Each case has exactly one acceptable class of outcome, judged against a float64 reference of the *same* input
values (after the cast to the case's dtype, so rounding of the input is not counted against the loss):

- ``"value"``: equal to the reference within a dtype-appropriate tolerance. Scale-invariant losses are compared
  with the reference at scale 1 (the input divided by its scale), the quadratic feature losses with s^2 times it.
- ``"nan"``: the input cannot be computed (a non-finite input, a value beyond the float range, an out-of-range
  label under ``jax.jit``): NaN or inf, or a clear error; never a finite number.
- ``"error"``: a ``ValueError`` (a concrete out-of-range label, a shape without relations to compare).

Minimum shapes (B = 1, B = 2, D = 1) may raise; if they return, the value must equal the reference, eager and
under ``jax.jit`` alike, and must not be identically zero (0 with a zero gradient trains nothing and says
nothing). Used by tests/losses/test_loss_edge_cases.py and experiments/loss_edge_case_count.py (which runs it
on any version of the package).
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax import losses

# f(s x, s y) == f(x, y) for s > 0 (cosines, normalised Gram matrices, distances over their mean, MMD with its
# default bandwidth from the data).
INVARIANT = frozenset({"pkdot", "pkt", "rkd", "sp", "cc", "nst", "mmd", "privileged_cosine"})
QUADRATIC = frozenset({"fitnets", "feature_mse", "mars"})  # f(s x, s y) == s^2 f(x, y)
SCALES = (1e-9, 1e-5, 1.0, 1e5, 1e16, 1e19, 1e20)
KWARGS: dict[str, dict[str, Any]] = {"pkdot": {"k": 2}}
CLASSES = 5
_FLOAT32_MAX = float(jnp.finfo(jnp.float32).max)


@dataclasses.dataclass(frozen=True)
class Case:
  """One call of one loss; ``expect`` is "value", "nan" or "error" (see the module docstring)."""

  name: str
  what: str
  student: np.ndarray
  teacher: np.ndarray
  labels: np.ndarray | None
  dtype: Any
  scale: float = 1.0
  jit: bool = False
  x64: bool = False
  grad: bool = False
  minimum: bool = False  # B or D at its minimum: a clear error is also acceptable
  expect: str = "value"


def shapes(name: str, batch: int, dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
  spec = losses.spec(name)
  if spec.inputs == "logits":
    return (batch, dim), (batch, dim)
  if spec.inputs == "feature_maps":
    return (batch, 2, 2, dim), (batch, 2, 2, dim if dim == 1 else dim + 1)
  return (batch, dim), (batch, dim if spec.same_dim or dim == 1 else dim + 1)


def _inputs(name, rng, batch=4, dim=3, integer=False):
  s_shape, t_shape = shapes(name, batch, CLASSES if losses.spec(name).inputs == "logits" and dim == 3 else dim)
  def draw(shape):
    return rng.integers(-4, 5, shape).astype(np.float64) if integer else rng.normal(size=shape)

  student, teacher = draw(s_shape), draw(t_shape)
  n_classes = s_shape[-1]
  labels = rng.integers(0, n_classes, batch).astype(np.int32) if losses.spec(name).needs_labels else None
  return student, teacher, labels


def cases() -> list[Case]:
  """The grid: every loss x scales x dtypes, minimum shapes eager and jitted, out-of-range labels, gradients."""
  return [case for name in losses.available() for case in cases_for(name)]


def cases_for(name: str) -> list[Case]:
  """The grid of one loss (B = 4, D = 3 or 5 classes, fixed random inputs per loss)."""
  out = []
  rng = np.random.default_rng(zlib.crc32(name.encode()))
  s, t, y = _inputs(name, rng)
  heavy = name == "pkdot"  # eager PKDOT retraces its solver loops per call: jit it
  for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
    for scale in SCALES:
      out.append(Case(name, f"{jnp.dtype(dtype).name} x{scale:g}", s * scale, t * scale, y, dtype, scale,
                      jit=heavy))
  for scale in (1.0, 1e5, 1e20):  # the same inputs jitted
    if not heavy:
      out.append(Case(name, f"float32 x{scale:g} jit", s * scale, t * scale, y, jnp.float32, scale, jit=True))
  si, ti, yi = _inputs(name, rng, integer=True)
  for scale in (1.0, 1e4):  # 1e4: squares of sums overflow int32
    out.append(Case(name, f"int32 x{scale:g}", si * scale, ti * scale, yi, jnp.int32, scale, jit=heavy))
  for scale in SCALES:
    out.append(Case(name, f"float64 x{scale:g}", s * scale, t * scale, y, jnp.float64, scale, jit=heavy, x64=True))
  out.append(Case(name, "int32 under x64", si, ti, yi, jnp.int32, jit=heavy, x64=True))
  out += _minimum_cases(name, rng)
  if y is not None:
    out += _label_cases(name, s, t, y)
  if name in INVARIANT:
    for scale in (1e-9, 1.0, 1e19):
      out.append(Case(name, f"grad float32 x{scale:g}", s * scale, t * scale, y, jnp.float32, scale, jit=True,
                      grad=True))
  return out


def _minimum_cases(name, rng):
  out = []
  for batch, dim in ((1, 3), (2, 3), (4, 1)):
    s, t, y = _inputs(name, rng, batch, dim)
    for jit in (False, True):
      if name == "pkdot" and not jit:
        continue
      out.append(Case(name, f"B={batch} D={dim}{' jit' if jit else ''}", s, t, y, jnp.float32, jit=jit,
                      minimum=True))
  return out


def _label_cases(name, s, t, y):
  out = []
  n_classes = s.shape[-1]
  for bad in (n_classes, n_classes + 2, -1, -n_classes - 1):
    labels = y.copy()
    labels[1] = bad
    out.append(Case(name, f"label {bad} eager", s, t, labels, jnp.float32, expect="error"))
    out.append(Case(name, f"label {bad} jit", s, t, labels, jnp.float32, jit=True, expect="nan"))
  return out


# --------------------------------------------------------------------------------------------- evaluation


@functools.lru_cache(maxsize=None)
def _jitted(name: str, grad: bool, needs_labels: bool):
  fn = functools.partial(losses.spec(name).fn, **KWARGS.get(name, {}))
  if grad:
    fn = jax.value_and_grad(fn)
  return jax.jit(fn)


def _call(name, student, teacher, labels, *, jit, grad=False):
  fn = functools.partial(losses.spec(name).fn, **KWARGS.get(name, {}))
  if jit:
    fn = _jitted(name, grad, labels is not None)
  elif grad:
    fn = jax.value_and_grad(fn)
  args = (student, teacher) if labels is None else (student, teacher, jnp.asarray(labels))
  out = fn(*args)
  if grad:
    return float(out[0]), np.asarray(out[1], np.float64)
  return float(out), None


def _reference(name, student64, teacher64, labels, grad=False):
  """The loss in float64 on these values (jitted: PKDOT eagerly is slow); (value, grad) or raises."""
  with jax.enable_x64(True):
    return _call(name, jnp.asarray(student64, jnp.float64), jnp.asarray(teacher64, jnp.float64), labels, jit=True,
                 grad=grad)


# Absolute tolerance in units of 1e-6 (float32) or 1e-9 (float64): the logit losses multiply float32 rounding of
# log-probabilities (~1e-7) by T^2 (alpha + beta) = 144 (dkd) and T^2 = 16 (hinton_kd).
_ATOL_UNITS = {"dkd": 30.0, "hinton_kd": 4.0}


def _tolerance(name, dtype, x64):
  """(rtol, atol) of the comparison with the float64 reference."""
  float64 = x64 and jnp.dtype(dtype) == jnp.float64
  rtol = 2e-3 if name == "pkdot" else (1e-9 if float64 else 1e-4)  # PKDOT: solves to marginal error 1e-4
  return rtol, _ATOL_UNITS.get(name, 1.0) * (1e-9 if float64 else 1e-6)


def judge(case: Case) -> tuple[str, str]:
  """("ok" | "wrong" | "error", detail): "wrong" is a silent wrong result, "error" an unexpected exception."""
  with jax.enable_x64(case.x64):
    cast_s = np.asarray(jnp.asarray(case.student, case.dtype).astype(jnp.float64 if case.x64 else jnp.float32),
                        np.float64) if case.dtype != jnp.int32 else case.student
    cast_t = np.asarray(jnp.asarray(case.teacher, case.dtype).astype(jnp.float64 if case.x64 else jnp.float32),
                        np.float64) if case.dtype != jnp.int32 else case.teacher
    try:
      value, grad = _call(case.name, jnp.asarray(case.student, case.dtype), jnp.asarray(case.teacher, case.dtype),
                          case.labels, jit=case.jit, grad=case.grad)
    except (ValueError, TypeError) as e:
      if case.expect in ("error", "nan") or case.minimum or not np.all(np.isfinite(cast_s)) \
          or not np.all(np.isfinite(cast_t)):
        return "ok", f"raised {type(e).__name__}: {str(e)[:100]}"
      return "error", f"{type(e).__name__}: {str(e)[:200]}"
  if case.expect == "error":
    return "wrong", f"returned {value!r} for an out-of-range label (expected a ValueError)"
  if case.expect == "nan" or not (np.all(np.isfinite(cast_s)) and np.all(np.isfinite(cast_t))):
    return ("ok", f"{value!r}") if not np.isfinite(value) else ("wrong", f"finite {value!r}, expected NaN/error")
  return _compare(case, cast_s, cast_t, value, grad)


def _compare(case, cast_s, cast_t, value, grad):
  scale = case.scale if case.name in INVARIANT | QUADRATIC else 1.0
  try:
    ref, ref_grad = _reference(case.name, cast_s / scale, cast_t / scale, case.labels, grad=case.grad)
  except ValueError as e:
    return "wrong", f"returned {value!r}; the float64 reference raises {str(e)[:100]}"
  if case.name in QUADRATIC:
    ref = ref * case.scale**2
  if not np.isfinite(ref):
    return "wrong", f"returned {value!r} where the float64 reference is {ref!r} (expected a clear error)"
  if abs(ref) > (1e300 if case.x64 else _FLOAT32_MAX):  # the true value overflows the float range
    return ("ok", f"{value!r}") if not np.isfinite(value) else ("wrong", f"finite {value!r} for {ref:.3g}")
  rtol, atol = _tolerance(case.name, case.dtype, case.x64)
  if case.name in QUADRATIC:
    atol *= case.scale**2
  if not np.isfinite(value) or abs(value - ref) > atol + rtol * abs(ref):
    return "wrong", f"{value!r} vs reference {ref!r}"
  if case.minimum and abs(ref) < 1e-12:  # random inputs: a zero loss is a loss that is zero for every input
    return "wrong", f"{value!r}: identically 0 at this shape (nothing to distil), expected a clear error"
  if case.grad:
    # f(s x) = f(x) => s grad f(s x) = grad f(x).
    error, peak = np.max(np.abs(grad * case.scale - ref_grad)), np.max(np.abs(ref_grad))
    if not np.isfinite(error) or error > 1e-3 * peak + 1e-6:
      return "wrong", f"gradient x scale off by {error:.3g} (largest reference entry {peak:.3g})"
  return "ok", f"{value!r} ~ {ref!r}"
