"""Shared fixtures for the model tests.

``numpy_init`` builds variables from the abstract tree (jax.eval_shape of ``init``) filled with NumPy random
numbers: XLA:CPU compiles a threefry-based flax ``init`` slowly (~17 s for the tiny R3D-18 on the 2-core
CI box), while the forward pass compiles in well under a second. BatchNorm statistics, scales and biases
are random too, so that eval-mode tests and the torch comparison exercise every variable.
"""

import jax
import numpy as np
import pytest


def _fill(path, leaf, rng):
  name = getattr(path[-1], "key", str(path[-1]))
  shape, dtype = leaf.shape, leaf.dtype
  if name == "kernel":
    fan_in = int(np.prod(shape[:-1])) or 1
    value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
  elif name == "scale":
    value = 1.0 + 0.1 * rng.standard_normal(shape)
  elif name == "var":
    value = rng.uniform(0.5, 1.5, shape)
  elif name in ("bias", "mean"):
    value = 0.1 * rng.standard_normal(shape)
  else:
    value = 0.02 * rng.standard_normal(shape)
  return np.asarray(value, dtype=dtype)


def numpy_variables(model, *args, seed=0, **kwargs):
  abstract = jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a, **kwargs), *args)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(lambda p, leaf: _fill(p, leaf, rng), abstract)


@pytest.fixture
def numpy_init():
  """numpy_init(model, *inputs, seed=0, **apply_kwargs) -> variables (a dict of numpy arrays)."""
  return numpy_variables
