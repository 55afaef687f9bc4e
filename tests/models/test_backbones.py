"""Backbones: parameter counts (eval_shape, nothing allocated), shapes, BatchNorm modes, bf16, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pkdot_jax import models

TINY = dict(widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1), stem_width=8)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _abstract_init(module, *shape):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return jax.eval_shape(lambda v: module.init_with_output(jax.random.key(0), v, train=False), x)


def test_r3d18_matches_torchvision_count_and_shape():
  out, variables = _abstract_init(models.R3D18(), 8, 10, 112, 112, 3)
  assert _count(variables["params"]) == 33_166_272  # torchvision r3d_18 without its fc
  assert out.shape == (8, 512) and out.dtype == jnp.float32
  assert set(variables) == {"params", "batch_stats"}
  assert variables["params"]["stem_conv"]["kernel"].shape == (3, 7, 7, 3, 64)


def test_resnet2d18_one_channel_count_and_shape():
  out, variables = _abstract_init(models.ResNet2D(), 4, 65, 85, 1)
  assert _count(variables["params"]) == 11_170_240  # torchvision resnet18 without fc, 1-channel conv1
  assert out.shape == (4, 512)


def test_privileged_backbones_full_size_shapes():
  physio = models.PhysioSpectrogramResNet(nperseg=128, noverlap=96)
  out, variables = _abstract_init(physio, 4, 2816, 1)
  assert out.shape == (4, 512) and _count(variables["params"]) == 11_170_240
  out, _ = _abstract_init(models.AudioLogMelResNet(), 4, 16000)
  assert out.shape == (4, 512)
  out, _ = _abstract_init(models.PhysioCNN1D(), 4, 2816, 3)
  assert out.shape == (4, 512)


def test_tiny_r3d_forward_and_batchnorm_modes(numpy_init):
  model = models.R3D18(**TINY)
  x = jax.random.normal(jax.random.key(1), (2, 8, 32, 32, 3))
  variables = numpy_init(model, x, train=False)
  out_eval = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert out_eval.shape == (2, 64) and bool(jnp.all(jnp.isfinite(out_eval)))
  out_train, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  assert out_train.shape == (2, 64)
  # Train mode normalises with batch statistics and moves the running averages by (1 - 0.9) (torch 0.1).
  old = variables["batch_stats"]["stem_bn"]["mean"]
  new = updates["batch_stats"]["stem_bn"]["mean"]
  stem = jax.lax.conv_general_dilated(
      x, variables["params"]["stem_conv"]["kernel"], (1, 2, 2), ((1, 1), (3, 3), (3, 3)),
      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  np.testing.assert_allclose(new, 0.9 * old + 0.1 * stem.mean(axis=(0, 1, 2, 3)), rtol=1e-4, atol=1e-6)
  # Eval mode uses the running averages: the output differs from train mode's batch-statistics output.
  assert not np.allclose(out_eval, out_train, atol=1e-3)


def test_bf16_compute_keeps_fp32_params_and_stats(numpy_init):
  model = models.R3D18(**TINY, dtype=jnp.bfloat16)
  x = jax.random.normal(jax.random.key(1), (2, 4, 16, 16, 3))
  abstract = jax.eval_shape(lambda v: model.init(jax.random.key(0), v, train=False), x)
  assert {leaf.dtype for leaf in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
  variables = numpy_init(model, x, train=False)
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  out, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))
  assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("module,shape,match", [
    (models.R3D18(**TINY), (2, 8, 32, 32), r"R3D18: expected input of shape \(B, T, H, W, C\) with C=3, "
                                           r"got \(2, 8, 32, 32\)"),
    (models.R3D18(**TINY), (2, 8, 32, 32, 1), r"C=3, got \(2, 8, 32, 32, 1\)"),
    (models.R3D18(**TINY), (2, 2, 32, 32, 3), r"T >= 3 \(temporal kernel\).*\(2, 2, 32, 32, 3\)"),
    (models.ResNet2D(**TINY), (2, 32, 32, 3), r"ResNet2D: .*C=1, got \(2, 32, 32, 3\)"),
    (models.PhysioSpectrogramResNet(**TINY), (2, 512), r"PhysioSpectrogramResNet: .*\(B, L, C\), got \(2, 512\)"),
    (models.PhysioSpectrogramResNet(**TINY), (2, 40, 1), r"L >= nperseg=64, got \(2, 40, 1\)"),
    (models.AudioLogMelResNet(**TINY), (2, 100, 1), r"AudioLogMelResNet: .*\(B, L\), got \(2, 100, 1\)"),
    (models.PhysioCNN1D(), (2, 5, 1), r"CNN1D: .*kernel_size=7, got input \(2, 5, 1\)"),
])
def test_bad_input_names_module_and_shapes(module, shape, match):
  with pytest.raises(ValueError, match=match):
    jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), jax.ShapeDtypeStruct(shape, jnp.float32))


@pytest.mark.parametrize("kernel,strides,padding", [
    ((3, 3, 3), (1, 1, 1), ((1, 1),) * 3),
    ((3, 3, 3), (2, 2, 2), ((1, 1),) * 3),
    ((3, 7, 7), (1, 2, 2), ((1, 1), (3, 3), (3, 3))),
    ((1, 1, 1), (2, 2, 2), ((0, 0),) * 3),
])
def test_conv3d_frames_equals_native(kernel, strides, padding):
  """The CPU "frames" form of a 3-D convolution is the native one: same outputs and same gradients."""
  from pkdot_jax.models.resnet import Conv3D

  x = jax.random.normal(jax.random.key(0), (2, 5, 9, 9, 3))
  native = Conv3D(4, kernel, strides, padding, impl="xla")
  frames = Conv3D(4, kernel, strides, padding, impl="frames")
  params = native.init(jax.random.key(1), x)

  def loss(module, p, x):
    return jnp.sum(jnp.sin(module.apply(p, x)))

  np.testing.assert_allclose(frames.apply(params, x), native.apply(params, x), rtol=1e-5, atol=1e-5)
  g_native = jax.grad(loss, argnums=(1, 2))(native, params, x)
  g_frames = jax.grad(loss, argnums=(1, 2))(frames, params, x)
  for a, b in zip(jax.tree.leaves(g_frames), jax.tree.leaves(g_native)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def _tiny_backbone_config(arch: str = "r3d18", privileged: str = "physio", privileged_backbone: str = "resnet2d18"):
  cfg = models.default_config("tiny")
  # Last widths that differ from each other and from every other size of the config, so that a width read from
  # the wrong field shows.
  cfg.video.widths, cfg.video.blocks, cfg.video.stem_width = (8, 12, 20), (1, 1, 1), 8
  cfg.video.arch = arch
  cfg.privileged_net.widths, cfg.privileged_net.blocks, cfg.privileged_net.stem_width = (8, 28), (1, 1), 8
  cfg.privileged_net.cnn_widths = (8, 36)
  cfg.privileged, cfg.privileged_backbone = privileged, privileged_backbone
  cfg.input_shapes.video = (4, 16, 16, 3)
  return cfg


@pytest.mark.parametrize("arch", sorted(models.VIDEO_BACKBONES))
def test_video_backbone_declares_its_output_width(arch):
  cfg = _tiny_backbone_config(arch)
  module = models.build_video_backbone(cfg)
  out, _ = _abstract_init(module, 2, *cfg.input_shapes.video)
  assert out.shape == (2, module.output_dim) == (2, models.visual_dim(cfg))


@pytest.mark.parametrize("privileged,backbone",
                         [("physio", "resnet2d18"), ("audio", "resnet2d18"), ("physio", "cnn1d")])
def test_privileged_backbone_declares_its_output_width(privileged, backbone):
  assert set(models.PRIVILEGED_BACKBONES) == {"resnet2d18", "cnn1d"}  # a new one is added to the cases above
  cfg = _tiny_backbone_config(privileged=privileged, privileged_backbone=backbone)
  module = models.build_privileged_backbone(cfg)
  out, _ = _abstract_init(module, 2, *cfg.input_shapes[privileged])
  assert out.shape == (2, module.output_dim) == (2, models.privileged_dim(cfg))
  assert module.output_dim == (36 if backbone == "cnn1d" else 28)


def test_tnet_maps_the_declared_widths():
  cfg = _tiny_backbone_config("frame_cnn_spatial", "physio", "cnn1d")
  tnet = models.build_tnet(cfg)
  assert (tnet.in_dim, tnet.out_dim) == (20, 36)


@pytest.mark.parametrize("field,value,match", [("video.arch", "r2plus1d", r"video.arch must be one of \('r3d18'"),
                                               ("privileged_backbone", "lstm", "privileged_backbone must be one of")])
def test_unknown_backbone_names_the_registered_ones(field, value, match):
  cfg = _tiny_backbone_config()
  if field == "video.arch":
    cfg.video.arch = value
  else:
    cfg.privileged_backbone = value
  with pytest.raises(ValueError, match=match):
    models.build_teacher(cfg)
