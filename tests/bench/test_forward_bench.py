"""The forward benchmark's random variables: the init's tree and shapes, BatchNorm statistics and scales at 1."""

import flax.linen as nn
import jax
import numpy as np

from experiments.bench import forward_bench


class _Tiny(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Dense(7)(x)
    x = nn.BatchNorm(use_running_average=not train)(x)
    return nn.LayerNorm()(x)


def test_random_variables_match_the_init():
  model, x = _Tiny(), np.ones((2, 5), np.float32)
  variables = forward_bench.random_variables(model, x, train=False)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert jax.tree.structure(variables) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(variables), jax.tree.leaves(expected), strict=True):
    assert got.shape == want.shape and got.dtype == want.dtype
  assert np.all(variables["batch_stats"]["BatchNorm_0"]["var"] == 1.0)
  assert np.all(variables["params"]["LayerNorm_0"]["scale"] == 1.0)
  kernel = variables["params"]["Dense_0"]["kernel"]
  assert np.std(kernel) > 0  # random, not a constant
  np.testing.assert_array_equal(kernel, forward_bench.random_variables(model, x, train=False)["params"]["Dense_0"]
                                ["kernel"])  # seeded: every call times the same variables
  model.apply(variables, x, train=False)  # the tree is one the model takes
