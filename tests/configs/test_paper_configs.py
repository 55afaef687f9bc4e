"""Paper-setup configs: the paper's values, the protocols' splits, and an end-to-end smoke run on fake data.

Each smoke run trains the authors' pipeline, visual-only and privileged-only models -> teacher -> T-Net -> student (1
epoch each, tiny models), on a fake layout written in the real file formats (tests/data/fakes.py); the fake sets are
built once per module and shared.
"""

import json
import os
import sys

import jax
import numpy as np
import pytest

import fakes  # tests/data, put on sys.path by tests/configs/conftest.py
from pkdot_jax.data import io as io_lib
from pkdot_jax.configs import affwild2_va, biovid_5class, biovid_binary
from pkdot_jax import models
from pkdot_jax.train import checkpoint
from pkdot_jax.train import input as input_lib
from pkdot_jax.train import loop

CONFIGS = {"biovid_binary": biovid_binary, "biovid_5class": biovid_5class, "affwild2_va": affwild2_va}


# ------------------------------------------------------------------------------------------------ values
@pytest.mark.parametrize("variant", ["", "authors"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_values(name, variant):
  config = CONFIGS[name].get_config(variant)
  assert config.batch_size == 128
  assert config.optimizer.learning_rate == 1e-4 and config.optimizer.schedule == "constant"
  assert not config.optimizer.weight_decay  # plain Adam
  # The authors' pipeline: visual-only and privileged-only models, then the teacher on both, T-Net, student.
  assert tuple(config.pipeline) == ("pretrain_video", "pretrain_privileged", "teacher", "tnet", "student")
  assert all(config.stages[s].num_epochs == 20 for s in config.pipeline)
  assert config.student_backbone == ("frozen_from_video" if variant == "authors" else "finetune")
  assert config.model.video.pretrained == config.model.privileged_net.pretrained == ""  # given on the command line
  assert config.distill.method == "pkdot" and config.distill.weight == 0.6
  assert config.distill.method_kwargs.pkdot.k == 30 and config.distill.method_kwargs.pkdot.epsilon == 0.01
  assert config.distill.method_kwargs.pkdot.anchors == "least_similar"
  m = config.model
  assert tuple(m.video.widths) == (64, 128, 256, 512) and tuple(m.video.blocks) == (2, 2, 2, 2)
  assert tuple(m.privileged_net.widths) == (64, 128, 256, 512) and m.privileged_backbone == "resnet2d18"
  assert tuple(m.tnet.hidden) == (256, 128, 256)
  if name.startswith("biovid"):
    assert config.data.name == "biovid" and m.task == "classification"
    assert m.num_outputs == (2 if name == "biovid_binary" else 5)
    assert config.data.config_name == ("binary" if name == "biovid_binary" else "five_class")
    assert config.data.num_frames == 10 and tuple(m.input_shapes.video) == (10, 112, 112, 3)
    assert config.data.overrides.height == config.data.overrides.width == 112
    assert m.privileged == "physio" and m.spectrogram.fs == 512.0 and m.input_shapes.physio == (2816, 3)
    assert m.fusion.kind == "gated"
    assert config.data.protocol == ("authors" if variant else "subject") and config.data.num_folds == 5
  else:
    assert config.data.name == "affwild2" and config.data.protocol == "official"
    assert m.task == "regression" and m.num_outputs == 2 and m.fusion.kind == "jca"
    assert m.privileged == "audio" and m.logmel.fs == config.data.overrides.audio_fs == 16000
    assert config.select_metric == "ccc_mean"
  assert config.data.select_on_test == (variant == "authors")
  assert (config.data.val_fraction > 0) == (variant == "")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_models_trace_at_paper_shapes(name):
  """Teacher and student of the paper config at 10 (8) x 112 x 112 and the real physio / audio windows (shapes
  only: jax.eval_shape, nothing is compiled); the video backbone is torchvision's r3d_18 size."""
  m = CONFIGS[name].get_config().model
  batch = models.dummy_batch(m, 2)
  out, variables = jax.eval_shape(
      lambda b: models.build_teacher(m).init_with_output(jax.random.key(0), b, train=False), batch)
  visual = jax.tree.leaves(variables["params"]["visual_backbone"])
  assert sum(int(np.prod(x.shape)) for x in visual) == 33_166_272
  assert out.prediction.shape == (2, m.num_outputs) and out.embedding.shape == (2, 512)
  assert out.privileged.shape == (2, 512)
  student_out = jax.eval_shape(
      lambda b: models.build_student(m).init_with_output(jax.random.key(0), {"video": b["video"]},
                                                         train=False)[0], batch)
  assert student_out.prediction.shape == (2, m.num_outputs) and student_out.embedding.shape == (2, 512)


def test_variants_compose_and_unknown_is_refused():
  config = biovid_binary.get_config("authors,partb")
  assert config.data.config_name == "binary_partb" and config.data.protocol == "authors"
  assert config.model.input_shapes.physio == (2816, 5)
  with pytest.raises(ValueError, match="unknown variant"):
    biovid_5class.get_config("smok")
  with pytest.raises(ValueError, match="unknown variant"):
    affwild2_va.get_config("partb")


# ---------------------------------------------------------------------------------------------- fake data
@pytest.fixture(scope="module")
def fake_roots(tmp_path_factory):
  root = tmp_path_factory.mktemp("paper_configs")
  # 3 subjects x 5 levels x 4 trials; the binary config reads BL1 and PA4 only. Frames layout, 24 x 24 jpgs.
  fakes.write_biovid(root / "biovid", levels=(0, 1, 2, 3, 4), trials=4, layout="frames", num_frames=6)
  fakes.write_affwild2(root / "affwild2")
  return {"biovid_binary": root / "biovid", "biovid_5class": root / "biovid", "affwild2_va": root / "affwild2",
          "data_dir": root / "tfds"}


def _smoke(name, roots, variant="smoke"):
  config = CONFIGS[name].get_config(variant)
  config.data.manual_dir = str(roots[name])
  config.data.data_dir = str(roots["data_dir"])
  return config


def test_missing_manual_dir_names_the_field(fake_roots):
  config = _smoke("biovid_binary", fake_roots)
  config.data.manual_dir = ""
  with pytest.raises(ValueError, match=r"(?s)config\.data\.manual_dir.*samples\.csv"):
    input_lib.load(config)


# ------------------------------------------------------------------------------------------------ protocols
def _subjects(split):
  return set(io_lib.example_subjects(split.source, "train")[split.indices].tolist())


def test_biovid_protocols(fake_roots):
  corrected = input_lib.load(_smoke("biovid_binary", fake_roots))
  assert len(corrected.train) + len(corrected.val) + len(corrected.test) == 3 * 2 * 4
  parts = [_subjects(corrected.train), _subjects(corrected.val), _subjects(corrected.test)]
  assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
  batch = next(corrected.train_batches(0, (0,), 8))
  assert batch["video"].shape == (8, 4, 16, 16, 3) and batch["video"].dtype == np.uint8  # 20 -> crop 16, uint8
  assert batch["physio"].shape == (8, 512, 3) and set(batch["label"].tolist()) <= {0, 1}

  authors = input_lib.load(_smoke("biovid_binary", fake_roots, "authors,smoke"))
  # Clip-level folds: test clips share subjects with training; the best epoch is chosen on the test clips.
  assert _subjects(authors.train) & _subjects(authors.test)
  np.testing.assert_array_equal(authors.val.indices, authors.test.indices)
  assert authors.val.source is authors.test.source
  assert len(np.intersect1d(authors.train.indices, authors.test.indices)) == 0
  assert len(authors.train) + len(authors.test) == 3 * 2 * 4
  labels = input_lib._labels(authors.test.source, authors.test.indices)
  assert sorted(np.bincount(labels).tolist()) == [4, 4]  # stratified: 8 test clips of 24, 4 per class


def test_affwild2_official_split(fake_roots):
  data = input_lib.load(_smoke("affwild2_va", fake_roots))
  assert len(data.test) == 12 and data.test.source is not data.train.source  # official Validation_Set
  assert len(_subjects(data.val)) == 1 and len(_subjects(data.train)) == 2
  assert not _subjects(data.train) & _subjects(data.val)
  batch = next(data.train_batches(0, (0,), 8))
  assert batch["audio"].shape == (8, 6400) and batch["valence_arousal"].shape == (8, 2)

  authors = input_lib.load(_smoke("affwild2_va", fake_roots, "authors,smoke"))
  assert len(authors.train) == 36 and authors.val is authors.test


def test_sampling_rate_mismatch_is_refused(fake_roots):
  config = _smoke("affwild2_va", fake_roots)
  config.model.logmel.fs = 8000.0
  with pytest.raises(ValueError, match="16000"):
    input_lib.load(config)


# ------------------------------------------------------------------------------------------------ smoke runs
SMOKE_VARIANTS = {"biovid_binary": "authors,smoke", "biovid_5class": "smoke", "affwild2_va": "authors,smoke"}


def _weight_files(config, tmp_path):
  """torchvision-named .npz files (random values) at the smoke models' shapes, set in the config."""
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models"))
  from test_convert import torchvision_shapes  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for arch, group in (("r3d_18", "video"), ("resnet18", "privileged_net")):
    net = config.model[group]
    shapes = torchvision_shapes(arch, tuple(net.widths), tuple(net.blocks))
    state = {k: rng.uniform(0.5, 1.5, v) if k.endswith("running_var") else rng.standard_normal(v)
             for k, v in shapes.items()}
    np.savez(tmp_path / f"{arch}.npz", **{k: np.asarray(v, np.float32) for k, v in state.items()})
    net.pretrained = str(tmp_path / f"{arch}.npz")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_smoke_end_to_end(name, fake_roots, tmp_path):
  """The whole authors pipeline on fake data: unimodal models -> teacher -> T-Net -> student (the frozen-backbone
  student of `:authors` for two configs), the backbones from weight files for one."""
  config = _smoke(name, fake_roots, SMOKE_VARIANTS[name])
  if name == "biovid_binary":
    _weight_files(config, tmp_path)
  workdir = tmp_path / "run"
  results = loop.run_pipeline(config, str(workdir))
  assert list(results) == ["pretrain_video", "pretrain_privileged", "teacher", "tnet", "student"]
  for stage in results:
    assert os.path.exists(workdir / stage / "result.json")
  records = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  student = [r for r in records if r["stage"] == "student"]
  assert len(student) == 1
  test_metrics = student[0]["test"][0]
  if name == "affwild2_va":
    assert test_metrics["num_examples"] == 12
    assert {"ccc_valence", "ccc_arousal", "ccc_mean"} <= set(test_metrics)
    assert np.isfinite(test_metrics["ccc_mean"])
  elif name == "biovid_binary":  # authors' clip-level folds: 8 of the 24 clips in the test fold
    assert test_metrics["num_examples"] == 8 and 0.0 <= test_metrics["accuracy"] <= 1.0
  else:
    assert test_metrics["num_examples"] == 20  # one subject's clips
    assert 0.0 <= test_metrics["accuracy"] <= 1.0
  assert np.isfinite(student[0]["train_loss"]).all()
  assert results["student"]["members"][0]["test"] == test_metrics
  video = checkpoint.load_variables(str(workdir / "pretrain_video" / "best"))
  student_vars = checkpoint.load_variables(str(workdir / "student" / "best"))
  same = jax.tree.all(jax.tree.map(np.array_equal, student_vars["params"]["visual_backbone"],
                                   video["params"]["visual_backbone"]))
  assert same == (SMOKE_VARIANTS[name] == "authors,smoke")  # frozen: the visual-only model's backbone, unchanged
  if name == "biovid_binary":
    info = json.load(open(workdir / "run_info.json"))[-1]["pretrained"]
    assert set(info) == {"config.model.video.pretrained", "config.model.privileged_net.pretrained"}
