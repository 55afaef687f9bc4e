"""No silent wrong numbers: every loss over input scales 1e-9..1e20, integer/half/float32/float64 inputs, minimum
B and D, and out-of-range labels, against float64 (loss_edge_cases.py has the grid and the rules); then the
contracts the grid relies on, one by one."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import loss_edge_cases
from loss_edge_cases import Case
from pkdot_jax import losses


_HALF_SCALES = {jnp.dtype(jnp.bfloat16): (1e-9, 1e20), jnp.dtype(jnp.float16): (1e-5, 1e20)}


def _test_grid(name):
  """The grid of loss_edge_cases.cases_for(name), trimmed to keep the file fast (compilations dominate): every
  scale in float32, eager and jitted at 1 and 1e20; the extremes a half dtype can hold and where it overflows;
  integers; float64 at the extremes and integers under x64, jitted (one compilation, shared with the reference);
  B = 1 and D = 1 eager and jitted, B = 2 where a loss needs 3; labels; gradients at 1e-9 and 1e19.
  experiments/loss_edge_case_count.py runs the whole grid."""
  keep = []
  for case in loss_edge_cases.cases_for(name):
    dtype = jnp.dtype(case.dtype)
    if dtype in _HALF_SCALES and case.scale not in _HALF_SCALES[dtype]:
      continue
    if case.x64:
      if dtype == jnp.float64 and case.scale not in (1e-9, 1e20):
        continue
      case = dataclasses.replace(case, jit=True)
    if (case.what.startswith("float32 x1e+05 jit") or case.what.startswith("B=2") and name not in ("pkt", "rkd")
        or case.what == "grad float32 x1"):
      continue
    # PKDOT compiles its three solves once per input dtype and shape (~3 s each): float16 takes the bfloat16 path
    # (cast at entry) and B <= 2 is refused before any solve (test_all_losses.py); D = 1 is in the full grid.
    if name == "pkdot" and (dtype == jnp.float16 or case.minimum):
      continue
    keep.append(case)
  return keep


@pytest.mark.parametrize("name", losses.available())
def test_every_case_is_right_or_refused(name):
  results = [(case.what, *loss_edge_cases.judge(case)) for case in _test_grid(name)]
  assert len(results) >= 15
  bad = [f"{what}: {verdict}: {detail}" for what, verdict, detail in results if verdict != "ok"]
  assert not bad, "\n".join(bad)
  # Ordinary inputs are computed, not refused: every float32 scale and the integer inputs give the reference.
  computed = [what for what, _, detail in results if not detail.startswith("raised")]
  for scale in loss_edge_cases.SCALES:
    assert f"float32 x{scale:g}" in computed, scale
  assert "float32 x1 jit" in computed or name == "pkdot"
  assert "int32 x1" in computed and "int32 under x64" in computed


def test_the_judge_catches_wrong_results(monkeypatch):
  """The rules flag what the losses used to do: a value 0.1% off the float64 reference, a finite value for an inf
  input, a value for an out-of-range label."""
  real_spec = losses.spec
  broken = {"pkt": lambda v: v if jax.config.jax_enable_x64 else v * 1.001, "fitnets": jnp.nan_to_num}

  def spec(name):
    if name not in broken:
      return real_spec(name)
    return dataclasses.replace(real_spec(name), fn=lambda *a, **k: broken[name](real_spec(name).fn(*a, **k)))

  rng = np.random.default_rng(0)
  s, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 4))
  loss_edge_cases._jitted.cache_clear()  # pylint: disable=protected-access
  try:
    assert loss_edge_cases.judge(Case("pkt", "ok", s, t, None, jnp.float32))[0] == "ok"
    monkeypatch.setattr(loss_edge_cases.losses, "spec", spec)
    assert loss_edge_cases.judge(Case("pkt", "0.1% off", s, t, None, jnp.float32))[0] == "wrong"
    inf_input = np.where(np.arange(4) == 0, np.inf, t)
    assert loss_edge_cases.judge(Case("fitnets", "inf", inf_input, t, None, jnp.float32))[0] == "wrong"
  finally:
    monkeypatch.undo()
    loss_edge_cases._jitted.cache_clear()  # pylint: disable=protected-access
  logits = rng.normal(size=(4, 5))
  in_range = Case("dkd", "in range, claimed out of range", logits, logits + 1, np.array([0, 1, 2, 3], np.int32),
                  jnp.float32, expect="error")
  assert loss_edge_cases.judge(in_range)[0] == "wrong"


@pytest.mark.parametrize("name", ["rkd", "mmd", "sp", "fitnets"])  # pkdot: in the grid (int32, also under x64)
def test_integer_inputs_equal_the_same_values_in_float32(name):
  rng = np.random.default_rng(1)
  s_shape, t_shape = loss_edge_cases.shapes(name, 4, 3)
  s, t = rng.integers(-4, 5, s_shape), rng.integers(-4, 5, t_shape)
  fn = lambda a, b: losses.get(name)(a, b, **loss_edge_cases.KWARGS.get(name, {}))  # noqa: E731
  as_int = fn(jnp.asarray(s, jnp.int32), jnp.asarray(t, jnp.int32))
  assert as_int.dtype == jnp.float32
  np.testing.assert_allclose(as_int, fn(jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)), rtol=1e-6)


@pytest.mark.parametrize("name", ["dkd", "generalized_distillation"])
@pytest.mark.parametrize("bad", [5, 7, -1, -6])
def test_out_of_range_labels_raise_eagerly_and_give_nan_under_jit(name, bad):
  rng = np.random.default_rng(2)
  s, t = (jnp.asarray(rng.normal(size=(4, 5)), jnp.float32) for _ in range(2))
  labels = jnp.asarray([0, bad, 2, 4], jnp.int32)
  with pytest.raises(ValueError, match=rf"{name}: labels must be class ids in \[0, 5\).*got labels in "
                                       rf"\[{min(bad, 0)}, {max(bad, 4)}\]"):
    losses.get(name)(s, t, labels)
  assert np.isnan(float(jax.jit(losses.get(name))(s, t, labels)))
  assert np.isfinite(float(jax.jit(losses.get(name))(s, t, labels.at[1].set(3))))


def test_pkdot_at_overflowing_and_tiny_scales_matches_scale_one_and_reports_inf_inputs():
  rng = np.random.default_rng(3)
  s, t = (jnp.asarray(rng.normal(size=(6, 4)), jnp.float32) for _ in range(2))
  fn = jax.jit(lambda a, b: losses.pkdot(a, b, k=3, return_aux=True))
  reference, aux = fn(s, t)
  assert bool(aux.converged)
  for scale in (1e-9, 1e19, 1e20, 1e30):
    value, aux = fn(s * scale, t * scale)
    np.testing.assert_allclose(value, reference, rtol=1e-4, err_msg=str(scale))
    assert bool(aux.converged)
  value, aux = fn(s.at[0, 0].set(jnp.inf), t)
  assert np.isnan(float(value)) and not bool(aux.converged)


@pytest.mark.parametrize("name,student_shape,teacher_shape,match", [
    ("pkt", (2, 3), (2, 3), r"pkt needs B >= 3, got B=2"),
    ("pkt", (4, 1), (4, 3), r"pkt needs student D >= 2, got student D=1"),
    ("pkt", (4, 3), (4, 1), r"pkt needs teacher D >= 2"),
    ("rkd", (1, 3), (1, 3), r"rkd needs B >= 3, got B=1"),
    ("rkd", (2, 3), (2, 3), r"rkd needs B >= 3, got B=2"),
    ("sp", (1, 3), (1, 3), r"sp needs B >= 2"),
    ("cc", (1, 3), (1, 3), r"cc needs B >= 2"),
    ("mmd", (1, 3), (1, 3), r"mmd needs B >= 2"),
    ("hinton_kd", (4, 1), (4, 1), r"hinton_kd needs C >= 2"),
])
def test_shapes_without_relations_raise_naming_the_loss(name, student_shape, teacher_shape, match):
  rng = np.random.default_rng(4)
  s, t = jnp.asarray(rng.normal(size=student_shape)), jnp.asarray(rng.normal(size=teacher_shape))
  with pytest.raises(ValueError, match=match):
    losses.get(name)(s, t)
  with pytest.raises(ValueError, match=match):
    jax.jit(losses.get(name))(s, t)


def test_mmd_with_explicit_bandwidths_keeps_b1():
  """The B >= 2 requirement is the default bandwidth's (the mean distance of a single pair); fixed bandwidths
  give an input-dependent value at B = 1."""
  s, t = jnp.ones((1, 3)), jnp.zeros((1, 3))
  value = losses.mmd(s, t, bandwidths=[1.0])
  np.testing.assert_allclose(value, 2.0 - 2.0 * np.exp(-3.0), rtol=1e-6)


@pytest.mark.parametrize("name", ["fitnets", "feature_mse", "mars"])
def test_quadratic_losses_overflow_only_when_the_value_does(name):
  s = np.zeros((2, 3), np.float32)
  t = np.full((2, 3), 1.5e19, np.float32)  # squares overflow float32, the value (~1e38 to 7e38) may not
  expected = {"fitnets": 0.5 * 3 * 1.5e19**2, "feature_mse": 1.5e19**2, "mars": 3 * 1.5e19**2}[name]
  value = float(losses.get(name)(jnp.asarray(s), jnp.asarray(t)))
  if expected < float(jnp.finfo(jnp.float32).max):
    np.testing.assert_allclose(value, expected, rtol=1e-5)
  else:
    assert value == np.inf
