"""Random inputs for any registered loss (imported by file name: pytest puts this folder on sys.path)."""

import jax.numpy as jnp


def loss_inputs(spec, rng, batch=12, lead=()):
  """[student, teacher(, labels)] of the shapes `spec` consumes, float32 (labels int32); `lead`: extra leading
  axes (a vmap axis)."""
  if spec.inputs == "logits":
    shapes = (batch, 5), (batch, 5)
  elif spec.inputs == "feature_maps":
    shapes = (batch, 4, 4, 6), (batch, 4, 4, 8)
  else:
    shapes = (batch, 8), (batch, 8 if spec.same_dim else 10)
  args = [jnp.asarray(rng.normal(size=lead + s), jnp.float32) for s in shapes]
  if spec.needs_labels:
    args.append(jnp.asarray(rng.integers(0, 5, lead + (batch,)), jnp.int32))
  return args
