"""Fusion modules, heads and T-Net: shapes, per-sample behaviour (the authors' cross-batch attention bug,
fixed), parameter counts, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pkdot_jax import models

FUSIONS = {
    "gated": lambda task: models.GatedCrossAttentionFusion(3, task, embed_dim=32, num_tokens=4, mlp_dim=32),
    "jca": lambda task: models.JointCrossAttentionFusion(3, task, embed_dim=24, num_tokens=4, token_dim=16,
                                                          hidden=8),
    "concat": lambda task: models.ConcatFusion(3, task, embed_dim=24, hidden=32),
}


def _inputs(seed, batch=6, dv=64, dp=32):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal((batch, dv)).astype(np.float32),
          np.abs(rng.standard_normal((batch, dp))).astype(np.float32))


@pytest.mark.parametrize("kind", sorted(FUSIONS))
def test_fusion_is_per_sample_and_shaped(kind, numpy_init):
  fusion = FUSIONS[kind]("classification")
  visual, privileged = _inputs(0)
  variables = numpy_init(fusion, visual, privileged, train=False)
  apply = jax.jit(lambda v, a, b: fusion.apply(v, a, b, train=False))
  prediction, embedding = apply(variables, visual, privileged)
  assert prediction.shape == (6, 3) and embedding.shape == (6, fusion.embed_dim)
  # Replace every other sample: samples 0 and 1 must not move (the authors' fusion mixed the batch).
  other_v, other_p = _inputs(1)
  visual2, privileged2 = visual.copy(), privileged.copy()
  visual2[2:], privileged2[2:] = other_v[2:], other_p[2:]
  prediction2, embedding2 = apply(variables, visual2, privileged2)
  np.testing.assert_allclose(prediction2[:2], prediction[:2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(embedding2[:2], embedding[:2], rtol=1e-5, atol=1e-6)
  assert not np.allclose(prediction2[2:], prediction[2:])
  # A one-sample batch gives the same output as the sample inside a batch.
  single, _ = apply(variables, visual[:1], privileged[:1])
  np.testing.assert_allclose(single, prediction[:1], rtol=1e-5, atol=1e-6)
  # Both streams matter.
  prediction3, _ = apply(variables, visual, privileged[::-1].copy())
  assert not np.allclose(prediction3, prediction)


def test_gated_fusion_train_mode_is_per_sample_too(numpy_init):
  fusion = FUSIONS["gated"]("classification")
  visual, privileged = _inputs(0)
  variables = numpy_init(fusion, visual, privileged, train=False)
  apply = jax.jit(lambda v, a, b: fusion.apply(v, a, b, train=True))
  full, _ = apply(variables, visual, privileged)
  half, _ = apply(variables, visual[:3], privileged[:3])
  np.testing.assert_allclose(half, full[:3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(FUSIONS))
def test_regression_head_in_range(kind, numpy_init):
  fusion = FUSIONS[kind]("regression")
  visual, privileged = _inputs(2)
  variables = numpy_init(fusion, 10 * visual, privileged, train=False)
  prediction, _ = jax.jit(lambda v, a, b: fusion.apply(v, a, b, train=False))(variables, 10 * visual, privileged)
  assert bool(jnp.all(jnp.abs(prediction) <= 1.0))


def test_tnet_default_sizes_and_no_squashing(numpy_init):
  tnet = models.TNet()
  x = jax.ShapeDtypeStruct((4, 512), jnp.float32)
  variables = jax.eval_shape(lambda v: tnet.init(jax.random.key(0), v), x)
  shapes = [variables["params"][f"dense{i}"]["kernel"].shape for i in range(4)]
  assert shapes == [(512, 256), (256, 128), (128, 256), (256, 512)]
  small = models.TNet(out_dim=8, hidden=(4,), in_dim=6)
  z = 5 * np.random.default_rng(0).standard_normal((64, 6)).astype(np.float32)
  out = small.apply(numpy_init(small, z), z)
  assert out.shape == (64, 8) and float(jnp.max(jnp.abs(out))) > 1.0  # unbounded by default
  squashed = models.TNet(out_dim=8, hidden=(4,), output_activation="sigmoid")
  out = squashed.apply(numpy_init(squashed, z), z)
  assert bool(jnp.all((out >= 0) & (out <= 1))) and float(jnp.std(out)) > 0


def test_bad_input_messages():
  fusion = FUSIONS["gated"]("classification")
  with pytest.raises(ValueError, match=r"GatedCrossAttentionFusion: .*visual \(6, 64\) and privileged \(5, 32\)"):
    jax.eval_shape(lambda: fusion.init(jax.random.key(0), np.zeros((6, 64)), np.zeros((5, 32)), train=False))
  with pytest.raises(ValueError, match=r"Tokenizer \(privileged_tokens\): .*num_tokens=4, got \(6, 30\)"):
    jax.eval_shape(lambda: fusion.init(jax.random.key(0), np.zeros((6, 64)), np.zeros((6, 30)), train=False))
  with pytest.raises(ValueError, match=r"TNet: expected visual embedding \(B, 512\), got \(2, 64\)"):
    models.TNet(in_dim=512).init(jax.random.key(0), np.zeros((2, 64)))
  with pytest.raises(ValueError, match="Head: task"):
    models.Head(2, "ordinal").init(jax.random.key(0), np.zeros((2, 4)))
