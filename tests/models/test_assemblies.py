"""Teacher / student assemblies built by the factory: shapes (paper via eval_shape, tiny for real), batch
independence in eval mode, jit of train and eval forward, bf16, MT-PKDOT aux outputs, bad configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pkdot_jax import models


def _cfg(size="tiny", **overrides):
  cfg = models.default_config(size)
  for dotted, value in overrides.items():
    node = cfg
    *parents, leaf = dotted.split("__")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return cfg


def _perturb_others(batch, seed):
  """Same batch with every sample except the first two replaced by other random data."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, value in batch.items():
    value = value.copy()
    value[2:] = rng.standard_normal(value[2:].shape).astype(value.dtype)
    out[key] = value
  return out


CONFIGS = {
    "physio_resnet_gated": {},
    "physio_cnn1d_jca": dict(privileged_backbone="cnn1d", fusion__kind="jca"),
    "audio_resnet_concat_regression": dict(privileged="audio", fusion__kind="concat", task="regression"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_tiny_assemblies_shapes_and_batch_independence(name, numpy_init):
  cfg = _cfg(**CONFIGS[name])
  batch = models.dummy_batch(cfg, batch_size=5)
  other = _perturb_others(batch, seed=1)
  for model in (models.build_teacher(cfg), models.build_student(cfg)):
    variables = numpy_init(model, batch, train=False)
    apply = jax.jit(lambda v, b, model=model: model.apply(v, b, train=False))
    out = apply(variables, batch)
    assert isinstance(out, models.ModelOutput)
    assert out.prediction.shape == (5, 2) and out.embedding.shape == (5, 64)
    assert out.visual.shape == (5, 64) and out.privileged.shape == (5, 64) and out.aux == {}
    if cfg.task == "regression":
      assert bool(jnp.all(jnp.abs(out.prediction) <= 1.0))
    out2 = apply(variables, other)
    for field in ("prediction", "embedding", "visual", "privileged"):
      np.testing.assert_allclose(getattr(out2, field)[:2], getattr(out, field)[:2], rtol=1e-5, atol=1e-5,
                                 err_msg=f"{type(model).__name__}.{field}")
    assert not np.allclose(out2.prediction[2:], out.prediction[2:])


def test_student_ignores_privileged_inputs_and_teacher_uses_them(numpy_init):
  cfg = _cfg()
  batch = models.dummy_batch(cfg, batch_size=3)
  no_physio = {"video": batch["video"]}
  student = models.build_student(cfg)
  variables = numpy_init(student, no_physio, train=False)
  assert "tnet" in variables["params"]
  tnet_vars = numpy_init(models.build_tnet(cfg), np.zeros((3, models.visual_dim(cfg)), np.float32), seed=7)
  assert jax.tree.map(np.shape, tnet_vars["params"]) == jax.tree.map(np.shape, variables["params"]["tnet"])
  # A fitted T-Net drops into the student's "tnet" slot and determines its privileged stream.
  variables["params"]["tnet"] = tnet_vars["params"]
  out = jax.jit(lambda v, b: student.apply(v, b, train=False))(variables, no_physio)
  np.testing.assert_allclose(out.privileged, models.build_tnet(cfg).apply(tnet_vars, out.visual), rtol=1e-5,
                             atol=1e-5)
  teacher = models.build_teacher(cfg)
  with pytest.raises(ValueError, match=r"Teacher: batch has no 'physio' entry \(keys: \['video'\]\)"):
    jax.eval_shape(lambda: teacher.init(jax.random.key(0), no_physio, train=False))


def test_uint8_video_is_normalised_in_the_model_as_on_the_host(numpy_init):
  """The trainer's loaders ship uint8 clips; every model normalises them first, exactly as the host chain's
  Normalize did (a model that skipped it, or used other statistics, sees pixels 0..255 and differs)."""
  from pkdot_jax.data import transforms
  cfg = _cfg()
  batch = models.dummy_batch(cfg, batch_size=3)
  pixels = np.random.default_rng(0).integers(0, 256, batch["video"].shape, dtype=np.uint8)
  host = transforms.Normalize()({"video": pixels}, None)["video"]
  for model in (models.build_teacher(cfg), models.build_student(cfg), models.build_unimodal(cfg, "video")):
    variables = numpy_init(model, {**batch, "video": host}, train=False)
    apply = jax.jit(lambda v, b, model=model: model.apply(v, b, train=False))
    on_device, on_host = apply(variables, {**batch, "video": pixels}), apply(variables, {**batch, "video": host})
    # XLA fuses the normalisation into the first convolution: float32 rounding apart, the same numbers.
    np.testing.assert_allclose(on_device.prediction, on_host.prediction, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(on_device.embedding, on_host.embedding, rtol=1e-4, atol=1e-5)


def test_jit_train_forward_fp32_teacher_bf16_student(numpy_init):
  """Train mode under jit: batch statistics move, outputs finite; the student computes in bf16."""
  for dtype, build in (("float32", models.build_teacher), ("bfloat16", models.build_student)):
    cfg = _cfg(dtype=dtype)
    batch = models.dummy_batch(cfg, batch_size=4)
    model = build(cfg)
    variables = numpy_init(model, batch, train=False)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {np.dtype(np.float32)}
    train = jax.jit(lambda v, b, model=model: model.apply(v, b, train=True, mutable=["batch_stats"]))
    out, updates = train(variables, batch)
    assert out.prediction.shape == (4, 2) and out.embedding.dtype == jnp.float32
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(out))
    assert {x.dtype for x in jax.tree.leaves(updates)} == {np.dtype(np.float32)}
    moved = jax.tree.map(lambda a, b: not np.allclose(a, b), updates["batch_stats"], variables["batch_stats"])
    assert jax.tree.structure(moved) == jax.tree.structure(variables["batch_stats"])
    assert all(jax.tree.leaves(moved))


def test_multitask_teacher_and_video_only_student(numpy_init):
  cfg = _cfg(multitask=True, student__mode="video_only", num_outputs=5)
  batch = models.dummy_batch(cfg, batch_size=3)
  teacher = models.build_teacher(cfg)
  variables = numpy_init(teacher, batch, train=False)
  out = jax.jit(lambda v, b: teacher.apply(v, b, train=False))(variables, batch)
  assert set(out.aux) == {"visual", "privileged", "joint", "visual_embedding_adapted",
                          "privileged_embedding_adapted"}
  for key in ("visual", "privileged", "joint"):
    assert out.aux[key].shape == (3, 5)
  np.testing.assert_array_equal(out.aux["joint"], out.prediction)
  assert out.aux["visual_embedding_adapted"].shape == out.embedding.shape == (3, 64)
  student = models.build_student(cfg)
  abstract = jax.eval_shape(lambda: student.init_with_output(jax.random.key(0), {"video": batch["video"]},
                                                             train=False))
  out, student_vars = abstract
  assert out.privileged is None and out.prediction.shape == (3, 5) and out.embedding.shape == (3, 64)
  assert set(student_vars["params"]) == {"visual_backbone", "projection", "head"}


@pytest.mark.parametrize("privileged,backbone", [("physio", "resnet2d18"), ("physio", "cnn1d"),
                                                 ("audio", "resnet2d18")])
def test_paper_size_shapes_via_eval_shape(privileged, backbone):
  cfg = _cfg("paper", privileged=privileged, privileged_backbone=backbone, multitask=True)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), models.dummy_batch(cfg, 8))
  for model in (models.build_teacher(cfg), models.build_student(cfg)):
    out, variables = jax.eval_shape(lambda b, model=model: model.init_with_output(jax.random.key(0), b,
                                                                                  train=False), batch)
    assert out.prediction.shape == (8, 2) and out.embedding.shape == (8, 512)
    assert out.visual.shape == (8, 512) and out.privileged.shape == (8, 512)
    r3d = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]["visual_backbone"]))
    assert r3d == 33_166_272
    if backbone == "resnet2d18" and isinstance(model, models.Teacher):
      count = sum(int(np.prod(x.shape)) for x in
                  jax.tree.leaves(variables["params"]["privileged_backbone"]["resnet"]))
      assert count == 11_170_240


@pytest.mark.parametrize("overrides,match", [
    (dict(privileged="audio", privileged_backbone="cnn1d"), "cnn1d' works on the raw physio window only"),
    (dict(fusion__num_tokens=3), r"fusion.num_tokens=3 must divide the visual embedding size 64"),
    (dict(fusion__kind="film"), r"fusion.kind must be one of \('gated', 'jca', 'concat'\), got 'film'"),
    (dict(student__mode="frozen"), "student.mode must be one of"),
    (dict(dtype="float16"), "dtype must be one of"),
])
def test_bad_config(overrides, match):
  with pytest.raises(ValueError, match=match):
    cfg = _cfg(**overrides)
    models.build_teacher(cfg)
    models.build_student(cfg)


def test_check_same_embedding_dim():
  models.check_same_embedding_dim(np.zeros((4, 8)), np.zeros((4, 8)))
  with pytest.raises(ValueError, match=r"student \(4, 8\) and teacher \(4, 16\)"):
    models.check_same_embedding_dim(np.zeros((4, 8)), np.zeros((4, 16)))


def test_init_variables_runs():
  cfg = _cfg(video__widths=(4, 4, 4, 8), video__stem_width=4)
  backbone = models.build_video_backbone(cfg)
  variables = models.init_variables(backbone, np.zeros((1, 3, 8, 8, 3), np.float32))
  assert set(variables) == {"params", "batch_stats"}
  assert variables["params"]["stem_conv"]["kernel"].shape == (3, 7, 7, 3, 4)


@pytest.mark.parametrize("privileged", ["physio", "audio"])
def test_unimodal_models_graft_into_the_teacher(privileged):
  cfg = _cfg(privileged=privileged, task="regression")
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.float32), models.dummy_batch(cfg, 3))
  init = lambda model: jax.eval_shape(  # noqa: E731
      lambda b: model.init_with_output(jax.random.key(0), b, train=False), batch)
  _, teacher_vars = init(models.build_teacher(cfg))
  for modality, slot in (("video", "visual_backbone"), (privileged, "privileged_backbone")):
    out, variables = init(models.build_unimodal(cfg, modality))
    assert set(variables["params"]) == {slot, "head"}
    for collection in ("params", "batch_stats"):
      assert (jax.tree.map(np.shape, variables[collection][slot])
              == jax.tree.map(np.shape, teacher_vars[collection][slot]))
    assert out.prediction.shape == (3, 2) and out.embedding.shape == (3, 64)
    assert (out.visual is None) == (modality != "video") and (out.privileged is None) == (modality == "video")
  with pytest.raises(ValueError, match="build_unimodal: modality must be 'video' or the configured"):
    models.build_unimodal(cfg, "audio" if privileged == "physio" else "physio")
