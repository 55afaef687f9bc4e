"""Every registered loss: half-precision inputs, jax.jit and jax.vmap; PKDOT's identically-zero configurations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loss_inputs import loss_inputs
from pkdot_jax import losses


_inputs = loss_inputs


def _loss(name):
  spec = losses.spec(name)
  return functools.partial(spec.fn, k=4) if name == "pkdot" else spec.fn


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", losses.available())
def test_half_precision_inputs_are_computed_in_float32(name, dtype):
  spec, loss = losses.spec(name), _loss(name)
  student, teacher, *rest = _inputs(spec, np.random.default_rng(1))
  half_s, half_t = student.astype(dtype), teacher.astype(dtype)
  value, grad = jax.jit(jax.value_and_grad(lambda s: loss(s, half_t, *rest)))(half_s)
  assert value.dtype == jnp.float32
  assert grad.dtype == dtype and grad.shape == student.shape
  assert bool(jnp.all(jnp.isfinite(grad.astype(jnp.float32))))
  # The float32 loss of the upcast inputs, up to float32 rounding.
  expected = loss(half_s.astype(jnp.float32), half_t.astype(jnp.float32), *rest)
  np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", losses.available())
def test_jit_and_vmap_match_eager(name):
  spec, loss = losses.spec(name), _loss(name)
  rng = np.random.default_rng(2)
  args = _inputs(spec, rng)
  eager = loss(*args)
  np.testing.assert_allclose(jax.jit(loss)(*args), eager, rtol=1e-5, atol=1e-7)
  stacked = _inputs(spec, rng, lead=(3,))
  batched = jax.jit(jax.vmap(loss))(*stacked)
  assert batched.shape == (3,)
  per_slice = [loss(*(a[i] for a in stacked)) for i in range(3)]
  np.testing.assert_allclose(batched, per_slice, rtol=1e-5, atol=1e-7)
  # Gradients too (w.r.t. the student).
  grads = jax.jit(jax.vmap(jax.grad(loss)))(*stacked)
  for i in range(3):
    expected = jax.grad(loss)(*(a[i] for a in stacked))
    np.testing.assert_allclose(grads[i], expected, rtol=1e-4, atol=1e-4 * float(jnp.abs(expected).max()) + 1e-7)


def test_pkdot_vmaps_over_epsilon():
  rng = np.random.default_rng(3)
  s, t = (jnp.asarray(rng.normal(size=(10, 4)), jnp.float32) for _ in range(2))
  epsilons = jnp.asarray([0.005, 0.01, 0.1], jnp.float32)
  batched = jax.jit(jax.vmap(lambda e: losses.pkdot(s, t, k=3, epsilon=e)))(epsilons)
  np.testing.assert_allclose(batched, [losses.pkdot(s, t, k=3, epsilon=float(e)) for e in epsilons], rtol=1e-5)


@pytest.mark.parametrize("anchors,k", [("least_similar", 1), ("most_similar", 1)])
def test_pkdot_identically_zero_configurations_raise(anchors, k):
  rng = np.random.default_rng(4)
  s, t = (jnp.asarray(rng.normal(size=(2, 5)), jnp.float32) for _ in range(2))
  # What the check prevents: 0 with zero gradient for any inputs.
  with pytest.raises(ValueError, match=r"B=2.*k=1.*shift='min'.*identically 0"):
    losses.pkdot(s, t, k=k, anchors=anchors)
  for shift_ok in ({"shift": "affine"}, {"anchors": "all"}):
    kwargs = {"k": k, "anchors": anchors, **shift_ok}
    value, grad = jax.value_and_grad(lambda s: losses.pkdot(s, t, **kwargs))(s)
    assert float(value) > 0 and float(jnp.abs(grad).max()) > 0, kwargs
  for anchors_mode in ("least_similar", "most_similar", "all"):
    with pytest.raises(ValueError, match=r"B"):
      losses.pkdot(s[:1], t[:1], k=1, anchors=anchors_mode)
  with pytest.raises(ValueError, match=r"B >= 2.*B=1"):
    losses.pkdot(s[:1], t[:1], anchors="all")
  # B = 3, k = 1, shift="min" is not identically zero.
  s3, t3 = (jnp.asarray(rng.normal(size=(3, 5)), jnp.float32) for _ in range(2))
  assert float(jnp.abs(jax.grad(lambda s: losses.pkdot(s, t3, k=1))(s3)).max()) > 0
