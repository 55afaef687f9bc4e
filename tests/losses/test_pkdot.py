"""PKDOT and its building blocks against float64 NumPy references, invariances, transforms and sharding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import losses_np_reference as ref
from pkdot_jax import losses


def _embeddings(seed, batch, dim, kind="gauss"):
  rng = np.random.default_rng(seed)
  if kind == "gauss":
    teacher = rng.normal(size=(batch, dim))
    student = rng.normal(size=(batch, dim))
  elif kind == "relu":  # non-negative embeddings: all cosines positive, as after a ReLU
    teacher = np.maximum(rng.normal(size=(batch, dim)), 0) + 0.05
    student = np.maximum(rng.normal(size=(batch, dim)), 0) + 0.05
  elif kind == "clusters":  # class structure shared by teacher and a noisy student
    centres = rng.normal(size=(4, dim))
    labels = rng.integers(0, 4, batch)
    teacher = centres[labels] + 0.8 * rng.normal(size=(batch, dim))
    student = centres[labels] + 1.0 * rng.normal(size=(batch, dim))
  elif kind == "close":  # student close to the teacher: small divergence, cancellation-prone
    teacher = rng.normal(size=(batch, dim))
    student = teacher + 0.1 * rng.normal(size=(batch, dim))
  else:
    raise ValueError(kind)
  return student, teacher


_STATIC = ("k", "anchors", "epsilon", "shift", "threshold", "max_iterations", "implicit_diff", "return_aux")
pkdot = jax.jit(losses.pkdot, static_argnames=_STATIC)


def _value_and_grad(**kwargs):
  return jax.jit(jax.value_and_grad(functools.partial(losses.pkdot, **kwargs)))


def _f32(*arrays):
  return tuple(jnp.asarray(a, jnp.float32) for a in arrays)


def _rel(a, b):
  return abs(float(a) - float(b)) / max(abs(float(b)), 1e-30)


# ----------------------------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "seed,batch,dim,kind,k,anchors,shift",
    [
        (0, 16, 8, "gauss", 5, "least_similar", "min"),
        (1, 24, 16, "relu", 10, "least_similar", "min"),
        (2, 32, 6, "clusters", 30, "least_similar", "min"),
        (3, 20, 8, "close", 6, "least_similar", "min"),
        (4, 16, 8, "clusters", 5, "most_similar", "min"),
        (5, 12, 5, "gauss", 3, "all", "min"),
        (6, 16, 8, "relu", 5, "least_similar", "affine"),
    ],
)
def test_pkdot_matches_float64_reference(seed, batch, dim, kind, k, anchors, shift):
  student, teacher = _embeddings(seed, batch, dim, kind)
  expected = ref.pkdot(student, teacher, k=k, anchor_mode=anchors, shift=shift)
  value, aux = pkdot(*_f32(student, teacher), k=k, anchors=anchors, shift=shift, return_aux=True)
  assert bool(aux.converged)
  assert aux.n_iters.shape == (3,) and aux.errors.shape == (3,)
  assert _rel(value, expected) <= 1e-4, (float(value), expected)


def test_sinkhorn_divergence_with_weights_matches_reference():
  rng = np.random.default_rng(10)
  x, y = rng.uniform(size=(9, 3)), rng.uniform(size=(7, 3))
  a, b = rng.uniform(0.5, 1.5, 9), rng.uniform(0.5, 1.5, 7)
  a, b = a / a.sum(), b / b.sum()
  expected = ref.sinkhorn_divergence(x, y, 0.01, a, b)
  divergence = jax.jit(losses.sinkhorn_divergence, static_argnames=("epsilon",))
  value = divergence(*_f32(x, y, a, b), epsilon=0.01)
  assert _rel(value, expected) <= 1e-4
  # Defaulting to uniform weights is the same as passing them.
  uniform = divergence(*_f32(x, y), epsilon=0.05)
  explicit = divergence(*_f32(x, y, np.full(9, 1 / 9), np.full(7, 1 / 7)), epsilon=0.05)
  np.testing.assert_allclose(uniform, explicit, rtol=1e-6)
  assert _rel(uniform, ref.sinkhorn_divergence(x, y, 0.05)) <= 1e-4


def test_symmetric_fixed_point_matches_ott_solves_and_ignores_zero_weights():
  # The default path solves (x, x) and (y, y) with its own one-pass fixed point; the unrolled path is ott's for all
  # three solves. Both, differentiated in x, y and the weights, must agree; a point of weight 0 must not count.
  rng = np.random.default_rng(11)
  x, y = rng.normal(size=(10, 4)), rng.normal(size=(8, 4))
  a, b = rng.uniform(0.5, 1.5, 10), rng.uniform(0.5, 1.5, 8)
  a[3] = 0.0
  a, b = a / a.sum(), b / b.sum()
  x, y, a, b = _f32(x, y, a, b)

  def divergence(implicit_diff):
    def fn(x, y, a, b):
      value, aux = losses.sinkhorn_divergence(x, y, a, b, epsilon=0.05, threshold=1e-6,
                                              implicit_diff=implicit_diff, return_aux=True)
      return value, aux
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1), has_aux=True))

  (value, aux), (gx, gy) = divergence(True)(x, y, a, b)
  (value_ott, aux_ott), (gx_ott, gy_ott) = divergence(False)(x, y, a, b)
  assert bool(aux.converged) and bool(aux_ott.converged)
  assert _rel(value, value_ott) <= 1e-4
  for ours, theirs in ((gx, gx_ott), (gy, gy_ott)):
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3 * float(jnp.abs(theirs).max()))
  # One pass per iteration and a check at every iteration: the symmetric solves stop no later than ott's.
  assert int(aux.n_iters[1]) <= int(aux_ott.n_iters[1]) and int(aux.n_iters[2]) <= int(aux_ott.n_iters[2])

  keep = np.arange(10) != 3
  (value_dropped, _), (gx_dropped, _) = divergence(True)(x[keep], y, a[keep], b)
  assert _rel(value, value_dropped) <= 1e-5
  np.testing.assert_allclose(gx[keep], gx_dropped, rtol=1e-4, atol=1e-6)
  assert float(jnp.abs(gx[3]).max()) == 0.0

  # Danskin gradient in the weights, as ott's: central differences along a direction that keeps sum(a) = 1.
  # (At the zero weight itself the derivative is one-sided; ott's (x, y) term gives NaN there, from log 0.)
  direction = jnp.zeros(10).at[0].set(1.0).at[1].set(-1.0)
  grad_a = jax.grad(lambda a: losses.sinkhorn_divergence(x, y, a, b, epsilon=0.05, threshold=1e-7))(a)
  slope = float(grad_a[0] - grad_a[1])
  h = 1e-3
  value_at = lambda t: float(losses.sinkhorn_divergence(x, y, a + t * direction, b, epsilon=0.05, threshold=1e-7))
  assert abs(slope - (value_at(h) - value_at(-h)) / (2 * h)) <= 2e-3 * abs(slope) + 1e-5


def test_building_blocks_match_reference():
  student, teacher = _embeddings(11, 10, 4, "gauss")
  sim = losses.cosine_similarity_matrix(jnp.asarray(teacher, jnp.float32))
  np.testing.assert_allclose(sim, ref.cosine(teacher), atol=1e-6)
  for mode, k in (("least_similar", 3), ("most_similar", 4), ("all", 0)):
    idx = losses.select_anchors(jnp.asarray(ref.cosine(teacher), jnp.float32), k, mode)
    np.testing.assert_array_equal(idx, ref.anchors(ref.cosine(teacher), k, mode))
  # The diagonal is never an anchor: for least_similar it is the row maximum, for most_similar it is masked.
  for mode in ("least_similar", "most_similar"):
    idx = np.asarray(losses.select_anchors(sim, 9, mode))
    assert not np.any(idx == np.arange(10)[:, None])
  gathered = losses.gather_anchors(sim, jnp.array([[1, 2]] * 10))
  np.testing.assert_allclose(gathered, np.asarray(sim)[:, 1:3])
  np.testing.assert_allclose(losses.shift_similarity(sim, "min"), sim - sim.min())
  np.testing.assert_allclose(losses.shift_similarity(sim, "affine"), (sim + 1) / 2)
  # x vs y similarities.
  np.testing.assert_allclose(
      losses.cosine_similarity_matrix(*_f32(student, teacher)),
      (student / np.linalg.norm(student, axis=1, keepdims=True))
      @ (teacher / np.linalg.norm(teacher, axis=1, keepdims=True)).T, atol=1e-6)


# ----------------------------------------------------------------------------------------------- gradients


def test_gradient_matches_finite_differences_of_reference():
  student, teacher = _embeddings(20, 12, 4, "clusters")
  k = 4
  _, grad = _value_and_grad(k=k, threshold=1e-5)(*_f32(student, teacher))
  grad = np.asarray(grad)
  rng = np.random.default_rng(0)
  h = 1e-4
  for _ in range(3):
    direction = rng.normal(size=student.shape)
    direction /= np.linalg.norm(direction)
    fd = (ref.pkdot(student + h * direction, teacher, k=k) - ref.pkdot(student - h * direction, teacher, k=k)) / (2 * h)
    analytic = float(np.sum(grad * direction))
    assert abs(analytic - fd) <= 2e-3 * np.linalg.norm(grad) + 1e-6, (analytic, fd)


def test_gradient_float64_matches_central_differences():
  student, teacher = _embeddings(21, 10, 4, "gauss")
  with jax.enable_x64(True):
    s64, t64 = jnp.asarray(student, jnp.float64), jnp.asarray(teacher, jnp.float64)
    loss = functools.partial(losses.pkdot, k=3, threshold=1e-10, max_iterations=20_000)
    value_and_grad = jax.jit(jax.value_and_grad(lambda s: loss(s, t64)))
    _, grad = value_and_grad(s64)
    assert grad.dtype == jnp.float64
    rng = np.random.default_rng(1)
    h = 1e-5
    f = jax.jit(lambda s: loss(s, t64))
    for _ in range(3):
      direction = jnp.asarray(rng.normal(size=student.shape))
      fd = (f(s64 + h * direction) - f(s64 - h * direction)) / (2 * h)
      np.testing.assert_allclose(jnp.vdot(grad, direction), fd, rtol=1e-5, atol=1e-9)


def test_implicit_and_unrolled_gradients_agree():
  student, teacher = _embeddings(22, 12, 6, "relu")
  s, t = _f32(student, teacher)
  _, g_implicit = _value_and_grad(k=4, threshold=1e-5)(s, t)
  _, g_unrolled = _value_and_grad(k=4, threshold=1e-5, implicit_diff=False)(s, t)
  np.testing.assert_allclose(g_implicit, g_unrolled, rtol=2e-3, atol=2e-3 * float(jnp.abs(g_implicit).max()))


def test_teacher_receives_no_gradient():
  s, t = _f32(*_embeddings(23, 10, 4, "gauss"))
  grad_t = jax.jit(jax.grad(lambda t: losses.pkdot(s, t, k=3)))(t)
  np.testing.assert_array_equal(grad_t, np.zeros_like(t))


# ----------------------------------------------------------------------------------------------- invariances


def test_invariances():
  student, teacher = _embeddings(30, 16, 8, "clusters")
  s, t = _f32(student, teacher)
  base = pkdot(s, t, k=5)
  perm = np.random.default_rng(0).permutation(16)
  np.testing.assert_allclose(pkdot(s[perm], t[perm], k=5), base, rtol=1e-4)
  scales = jnp.asarray(np.random.default_rng(1).uniform(0.1, 10.0, (16, 1)), jnp.float32)
  np.testing.assert_allclose(pkdot(s * scales, t * scales[::-1], k=5), base, rtol=1e-4)
  assert abs(float(pkdot(t, t, k=5))) <= 1e-6
  assert abs(float(pkdot(s, s, k=5, anchors="most_similar"))) <= 1e-6
  # "all" ignores k (even an out-of-range one) and differs from a selection.
  all_a = pkdot(s, t, anchors="all", k=3)
  np.testing.assert_allclose(pkdot(s, t, anchors="all", k=1000), all_a, rtol=1e-6)
  assert abs(float(all_a) - float(base)) > 1e-3


# ----------------------------------------------------------------------------------------------- transforms


def test_jit_and_vmap_match_eager():
  rng = np.random.default_rng(40)
  stack_s = jnp.asarray(rng.normal(size=(3, 12, 6)), jnp.float32)
  stack_t = jnp.asarray(rng.normal(size=(3, 12, 6)), jnp.float32)
  loss = functools.partial(losses.pkdot, k=4)
  single = jax.jit(jax.value_and_grad(loss))
  expected = [single(stack_s[i], stack_t[i]) for i in range(3)]
  batched, aux = jax.jit(jax.vmap(lambda s, t: losses.pkdot(s, t, k=4, return_aux=True)))(stack_s, stack_t)
  assert aux.converged.shape == (3,) and aux.n_iters.shape == (3, 3) and bool(jnp.all(aux.converged))
  np.testing.assert_allclose(batched, [v for v, _ in expected], rtol=1e-5)
  grads = jax.jit(jax.vmap(jax.grad(loss)))(stack_s, stack_t)
  for i in range(3):
    np.testing.assert_allclose(grads[i], expected[i][1], rtol=1e-4, atol=1e-4 * float(jnp.abs(grads[i]).max()))
  # The un-jitted call agrees with the jitted one.
  np.testing.assert_allclose(losses.pkdot(stack_s[0], stack_t[0], k=4), expected[0][0], rtol=1e-5)


@pytest.fixture(scope="module")
def sharding_problem():
  student, teacher = _embeddings(50, 32, 8, "clusters")
  s, t = _f32(student, teacher)
  loss = functools.partial(losses.pkdot, k=6)
  value, grad = jax.jit(jax.value_and_grad(loss))(s, t)
  return s, t, loss, value, grad


@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_jit_with_batch_sharded_inputs_is_global(sharding_problem, axis_type):
  s, t, loss, value, grad = sharding_problem
  assert jax.device_count() == 8
  types = (jax.sharding.AxisType.Explicit if axis_type == "explicit" else jax.sharding.AxisType.Auto,)
  mesh = jax.make_mesh((8,), ("batch",), axis_types=types)
  sharding = NamedSharding(mesh, P("batch", None))
  s_sharded, t_sharded = jax.device_put(s, sharding), jax.device_put(t, sharding)
  with jax.set_mesh(mesh):
    sharded_value, sharded_grad = jax.jit(jax.value_and_grad(loss))(s_sharded, t_sharded)
  np.testing.assert_allclose(sharded_value, value, rtol=1e-5)
  np.testing.assert_allclose(sharded_grad, grad, rtol=1e-5, atol=1e-5 * float(jnp.abs(grad).max()))


def test_shard_map_with_axis_name_is_global(sharding_problem):
  s, t, _, value, grad = sharding_problem
  mesh = jax.make_mesh((8,), ("batch",))

  @jax.jit
  def global_loss(s, t):
    per_device = jax.shard_map(lambda s, t: losses.pkdot(s, t, k=6, axis_name="batch"), mesh=mesh,
                               in_specs=(P("batch"), P("batch")), out_specs=P())
    return per_device(s, t)

  sharding = NamedSharding(mesh, P("batch"))
  s_sharded, t_sharded = jax.device_put(s, sharding), jax.device_put(t, sharding)
  with jax.set_mesh(mesh):
    sharded_value, sharded_grad = jax.jit(jax.value_and_grad(global_loss))(s_sharded, t_sharded)
  np.testing.assert_allclose(sharded_value, value, rtol=1e-5)
  # The gradient w.r.t. each device's shard is that of the one global loss (not 8 summed copies).
  np.testing.assert_allclose(sharded_grad, grad, rtol=1e-5, atol=1e-5 * float(jnp.abs(grad).max()))


# ----------------------------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_errors():
  s, t = _f32(*_embeddings(60, 8, 4, "gauss"))
  with pytest.raises(ValueError, match=r"k=8.*B=8"):
    losses.pkdot(s, t, k=8)
  with pytest.raises(ValueError, match=r"k=30.*B=8"):
    losses.pkdot(s, t)
  with pytest.raises(ValueError, match=r"batch size.*\(8, 4\).*\(7, 4\)"):
    losses.pkdot(s, t[:7], k=3)
  with pytest.raises(ValueError, match=r"student.*2-D.*\(8, 4, 1\)"):
    losses.pkdot(s[..., None], t, k=3)
  with pytest.raises(ValueError, match=r"teacher.*2-D.*\(4,\)"):
    losses.pkdot(s, t[0], k=3)
  with pytest.raises(ValueError, match="anchors"):
    losses.pkdot(s, t, k=3, anchors="least")
  with pytest.raises(ValueError, match="shift"):
    losses.pkdot(s, t, k=3, shift="max")
  with pytest.raises(ValueError, match=r"k=0"):
    losses.select_anchors(losses.cosine_similarity_matrix(t), 0)
  with pytest.raises(ValueError, match="square"):
    losses.select_anchors(jnp.zeros((4, 5)), 2)
  with pytest.raises(ValueError, match=r"x \(5, 3\).*y \(4, 2\)"):
    losses.sinkhorn_divergence(jnp.zeros((5, 3)), jnp.zeros((4, 2)), epsilon=0.1)
  with pytest.raises(ValueError, match=r"a must be a \(5,\)"):
    losses.sinkhorn_divergence(jnp.zeros((5, 3)), jnp.zeros((4, 3)), jnp.ones(4) / 4, epsilon=0.1)
  with pytest.raises(ValueError, match="epsilon"):
    losses.sinkhorn_divergence(jnp.zeros((5, 3)), jnp.zeros((4, 3)), epsilon=0.0)


def test_zero_vectors_and_identical_embeddings_are_finite():
  s, t = _f32(*_embeddings(61, 10, 4, "gauss"))
  value_and_grad = _value_and_grad(k=3)
  cases = [
      (s.at[2].set(0.0), t),  # a zero student vector
      (s, t.at[jnp.array([0, 5])].set(0.0)),  # zero teacher vectors
      (jnp.ones_like(s), t),  # all student embeddings identical
      (s, jnp.ones_like(t)),  # all teacher embeddings identical (ties everywhere)
      (jnp.zeros_like(s), jnp.zeros_like(t)),
  ]
  for student, teacher in cases:
    value, grad = value_and_grad(student, teacher)
    assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad)))


def test_nan_inputs_propagate():
  s, t = _f32(*_embeddings(62, 10, 4, "gauss"))
  value_and_grad = _value_and_grad(k=3)
  for student, teacher in ((s.at[3, 1].set(jnp.nan), t), (s, t.at[0, 0].set(jnp.nan)),
                           (s.at[0, 0].set(jnp.inf), t)):
    value, grad = value_and_grad(student, teacher)
    assert np.isnan(float(value))
    assert bool(jnp.any(jnp.isnan(grad)))


def test_non_convergence_is_reported():
  s, t = _f32(*_embeddings(63, 16, 3, "gauss"))
  value, aux = pkdot(s, t, k=5, threshold=1e-9, max_iterations=20, return_aux=True)
  assert not bool(aux.converged)
  assert int(aux.n_iters.max()) == 20
  assert np.isfinite(float(value))
