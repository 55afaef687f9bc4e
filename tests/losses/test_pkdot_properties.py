"""Property test of PKDOT over generated problems: finite value and gradient, and an honest ``converged`` flag.

Seeded NumPy generator: epsilon log-uniform in [1e-4, 1], small batches and dimensions, every anchors and shift
mode, and random, clustered, identical-row, zero-vector, near-duplicate and rescaled batches, in float32. Cases
sharing (B, D, k, anchors, shift) run as one jitted ``vmap`` (epsilon is traced), so the whole test compiles one
program per group.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import losses_np_reference as ref
from pkdot_jax import losses

KINDS = ("random", "clustered", "identical", "zeros", "near_duplicates", "scaled")
N_GROUPS = 8
CASES_PER_GROUP = 126  # 1,008 cases
THRESHOLD = losses.DEFAULT_THRESHOLD
# A lower cap than the default keeps the test fast; the flag must be honest whatever the cap.
MAX_ITERATIONS = 300


def _batch(rng, kind, batch, dim):
  def one():
    if kind == "random":
      return rng.normal(size=(batch, dim))
    if kind == "clustered":
      centres = rng.normal(size=(3, dim))
      return centres[rng.integers(0, 3, batch)] + 0.05 * rng.normal(size=(batch, dim))
    if kind == "identical":  # all rows equal, or two distinct rows
      rows = rng.normal(size=(2, dim))
      return rows[rng.integers(0, 2 if rng.uniform() < 0.5 else 1, batch)]
    if kind == "zeros":
      x = rng.normal(size=(batch, dim))
      x[rng.uniform(size=batch) < 0.3] = 0.0
      return x
    if kind == "near_duplicates":
      base = rng.normal(size=(max(1, batch // 4), dim))
      return base[rng.integers(0, len(base), batch)] + 1e-4 * rng.normal(size=(batch, dim))
    if kind == "scaled":
      return rng.normal(size=(batch, dim)) * 10.0 ** rng.uniform(-3, 3, size=(batch, 1))
    raise ValueError(kind)

  student, teacher = one(), one()
  if kind in ("identical", "zeros") and rng.uniform() < 0.5:  # degenerate on one side only
    if rng.uniform() < 0.5:
      student = rng.normal(size=(batch, dim))
    else:
      teacher = rng.normal(size=(batch, dim))
  return student, teacher


def generate(seed=0):
  """[(static config, students (n, B, D), teachers (n, B, D), epsilons (n,), kinds (n,))] per group."""
  rng = np.random.default_rng(seed)
  groups = []
  for g in range(N_GROUPS):
    batch = int(rng.integers(4, 41))
    dim = int(rng.integers(2, 17))
    anchors = ("least_similar", "most_similar", "all")[g % 3]
    shift = ("min", "affine")[(g // 3 + g) % 2]
    k = int(rng.integers(1, batch))
    kinds = [KINDS[i % len(KINDS)] for i in range(CASES_PER_GROUP)]
    pairs = [_batch(rng, kind, batch, dim) for kind in kinds]
    epsilons = 10.0 ** rng.uniform(-4, 0, size=CASES_PER_GROUP)
    config = dict(k=k, anchors=anchors, shift=shift)
    groups.append((config, np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]), epsilons,
                   np.array(kinds)))
  return groups


@functools.lru_cache(maxsize=None)
def _solver(k, anchors, shift):
  def loss(student, teacher, epsilon):
    return losses.pkdot(student, teacher, k=k, anchors=anchors, shift=shift, epsilon=epsilon,
                        max_iterations=MAX_ITERATIONS, return_aux=True)

  return jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True)))


def run_cases(groups):
  """Per group: (values, grads, aux) as NumPy arrays."""
  results = []
  for config, students, teachers, epsilons, _ in groups:
    (values, aux), grads = _solver(**config)(jnp.asarray(students, jnp.float32), jnp.asarray(teachers, jnp.float32),
                                             jnp.asarray(epsilons, jnp.float32))
    results.append((np.asarray(values), np.asarray(grads), jax.tree.map(np.asarray, aux)))
  return results


def classify(groups, results):
  """(number of cases, non-finite value or gradient, converged flag set although the diagnostics deny it)."""
  total = non_finite = misflagged = 0
  for (values, grads, aux) in results:
    finite = np.isfinite(values) & np.all(np.isfinite(grads), axis=(1, 2))
    reached = np.all(np.isfinite(aux.errors) & (aux.errors <= THRESHOLD), axis=1) & np.isfinite(values)
    total += len(values)
    non_finite += int(np.sum(~finite))
    misflagged += int(np.sum(aux.converged & ~reached))
  return total, non_finite, misflagged


@pytest.fixture(scope="module")
def cases():
  groups = generate()
  return groups, run_cases(groups)


def test_generated_cases_are_finite_and_honestly_flagged(cases):
  groups, results = cases
  total, non_finite, misflagged = classify(groups, results)
  assert total >= 1000
  assert non_finite == 0, f"{non_finite} of {total} cases have a non-finite value or gradient"
  assert misflagged == 0, f"{misflagged} of {total} cases report converged although a solve did not get there"
  # The flag is exactly "every solve reached threshold with a finite error, and the value is finite".
  for values, _, aux in results:
    reached = np.all(np.isfinite(aux.errors) & (aux.errors <= THRESHOLD), axis=1) & np.isfinite(values)
    np.testing.assert_array_equal(aux.converged, reached)
    # The (x, y) count includes the plain re-solve after an over-relaxed solve that blew up.
    assert np.all((aux.n_iters >= 0) & (aux.n_iters <= np.array([2 * MAX_ITERATIONS, MAX_ITERATIONS,
                                                                  MAX_ITERATIONS])))
  # Most cases do converge (the flag is not trivially False).
  n_converged = sum(int(np.sum(aux.converged)) for _, _, aux in results)
  assert n_converged >= total // 2, n_converged


def test_converged_values_match_float64_reference(cases):
  # Independent check of the flag: where it says converged, the value is the float64 (Newton) optimum's.
  groups, results = cases
  checked = 0
  for (config, students, teachers, epsilons, kinds), (values, _, aux) in zip(groups, results):
    for i in np.flatnonzero(aux.converged & np.isin(kinds, ("random", "clustered", "scaled")))[:3]:
      expected = ref.pkdot(students[i], teachers[i], k=config["k"], anchor_mode=config["anchors"],
                           eps=float(np.float32(epsilons[i])), shift=config["shift"])
      assert abs(values[i] - expected) <= 2e-3 * abs(expected) + 2e-5, (config, epsilons[i], values[i], expected)
      checked += 1
  assert checked >= 2 * N_GROUPS
