"""The analytic FLOP counter of experiments/bench/flops.py against a hand count, the traced program and XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import flops
from pkdot_jax import models
from pkdot_jax.models import resnet


def test_one_conv_layer_by_hand():
  # R3D-18 stem on a 10 x 112 x 112 clip: kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3), 3 -> 64.
  # Output 10 x 56 x 56 = 31,360 positions; MACs per position 3*7*7 * 3 * 64 = 28,224; FLOPs = 2 x MACs.
  assert [flops.conv_out(n, k, s, p) for n, k, s, p in zip((10, 112, 112), (3, 7, 7), (1, 2, 2), (1, 3, 3))] \
      == [10, 56, 56]
  assert flops.conv_flops((10, 56, 56), (3, 7, 7), 3, 64) == 2 * 31_360 * 28_224 == 1_770_209_280
  stem = flops.resnet_flops((10, 112, 112), 3, (64,), (1,), 64, 3)["stem"]
  assert stem == 1_770_209_280
  # Without padding taps: along an axis of 5 with k=3, s=1, p=1 the outputs see 2, 3, 3, 3, 2 taps.
  assert flops.valid_taps(5, 3, 1, 1) == 13
  assert flops.conv_flops_valid((5,), (3,), (1,), (1,), 2, 4) == 2 * 13 * 2 * 4


@pytest.mark.parametrize("impl", ["xla", "frames"])
def test_conv3d_module_matches_traced_count(impl):
  layer = resnet.Conv3D(16, (3, 3, 3), (2, 2, 2), ((1, 1),) * 3, impl=impl)
  x = jax.ShapeDtypeStruct((2, 5, 9, 9, 4), jnp.float32)
  variables = jax.eval_shape(lambda x: layer.init(jax.random.key(0), x), x)
  counted = flops.jaxpr_flops(lambda v, x: layer.apply(v, x), variables, x)
  out = [flops.conv_out(n, 3, 2, 1) for n in (5, 9, 9)]
  assert counted == 2 * flops.conv_flops(out, (3, 3, 3), 4, 16)  # batch of 2


def _abstract(model, batch):
  return jax.eval_shape(lambda b: model.init(jax.random.key(0), b, train=False), batch)


@pytest.fixture(scope="module")
def tiny():
  cfg = models.default_config("tiny")
  cfg.video.conv3d_impl = "xla"
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in models.dummy_batch(cfg, 2).items()}
  return cfg, batch


@pytest.mark.parametrize("which", ["student", "teacher"])
def test_analytic_count_equals_traced_program(tiny, which):
  # Exact: every convolution and matrix product of the real Flax modules, counted from the traced shapes.
  cfg, batch = tiny
  model = (models.build_student if which == "student" else models.build_teacher)(cfg)
  counted = flops.jaxpr_flops(lambda v, b: model.apply(v, b, train=False), _abstract(model, batch), batch)
  assert counted == 2 * flops.model_flops(cfg)[f"{which}_fwd"]


def test_analytic_count_within_5_percent_of_xla(tiny):
  # XLA's cost analysis skips taps on zero padding and adds element-wise work (BatchNorm, ReLU, softmax,
  # the spectrogram): compare with the padding-free analytic count; measured +2.0% on this tiny teacher.
  cfg, batch = tiny
  teacher = models.build_teacher(cfg)
  xla = flops.xla_flops(lambda v, b: teacher.apply(v, b, train=False), _abstract(teacher, batch), batch)
  analytic = 2 * flops.model_flops(cfg, count_padding=False)["teacher_fwd"]
  assert analytic <= xla <= 1.05 * analytic, (analytic, xla)


def test_train_step_convention():
  counts = flops.model_flops(models.default_config("paper"))
  assert counts["student_train"] == 3 * counts["student_fwd"] - counts["video_stem_fwd"]
  assert counts["train_step_with_teacher"] == counts["student_train"] + counts["teacher_fwd"]
  # Paper setup: the physio image is 65 frequencies x 85 frames (2816 samples, nperseg 128, hop 32).
  assert counts["physio_image"] == [65, 85]
  assert np.isclose(counts["video_backbone_fwd"] / 1e9, 53.92, atol=0.01)


def test_unsupported_config_is_rejected():
  cfg = models.default_config("tiny")
  cfg.fusion.kind = "jca"
  with pytest.raises(ValueError, match="fusion.kind"):
    flops.model_flops(cfg)
