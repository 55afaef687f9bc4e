"""Every matrix product of every distillation loss, forward and backward, is asked for in full float32.

On CPUs the default matmul precision is already float32, so value tests cannot see this; on recent NVIDIA GPUs
JAX computes default-precision float32 dots in TF32 (10 mantissa bits) and on TPUs in bfloat16. The losses
compare relations (cosines, |x|^2 + |y|^2 - 2 x.y costs at epsilon = 0.01) and should give the numbers the CPU
tests check on every backend, so each of their dots carries an explicit precision (the models' dots do not:
there TF32/bf16 is the intended speed trade). This test reads the traced program instead of the numbers.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from loss_inputs import loss_inputs
from pkdot_jax import losses

_HIGHEST = (jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGHEST)


def _dot_precisions(jaxpr, found):
  """(primitive, precision) of every dot_general / conv in `jaxpr` and its sub-jaxprs (loops, conds, custom rules)."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
      found.append((eqn.primitive.name, eqn.params["precision"]))
    for value in eqn.params.values():
      for item in value if isinstance(value, (tuple, list)) else (value,):
        inner = getattr(item, "jaxpr", item)
        if hasattr(inner, "eqns"):
          _dot_precisions(inner, found)
  return found


_inputs = loss_inputs


@pytest.mark.parametrize("name", losses.available())
def test_every_dot_of_the_loss_and_its_gradient_is_full_float32(name):
  spec = losses.spec(name)
  student, *rest = _inputs(spec, np.random.default_rng(0))
  kwargs = {"k": 4} if name == "pkdot" else {}
  loss = functools.partial(spec.fn, **kwargs)
  jaxpr = jax.make_jaxpr(jax.value_and_grad(lambda s: loss(s, *rest)))(student).jaxpr
  found = _dot_precisions(jaxpr, [])
  loose = [(prim, precision) for prim, precision in found if precision != _HIGHEST]
  assert not loose, f"{name}: {len(loose)} of {len(found)} matrix products at default precision: {loose[:3]}"


def test_detector_sees_a_default_precision_dot():
  # Positive control: the walker must find a dot inside a loop body.
  def f(x):
    return jax.lax.fori_loop(0, 2, lambda _, y: y @ x, x).sum()

  found = _dot_precisions(jax.make_jaxpr(jax.grad(f))(jnp.eye(3)).jaxpr, [])
  assert found and all(precision is None for _, precision in found)
