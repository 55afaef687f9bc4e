"""pkdot_synthetic: determinism, configured sizes and balance, fields per the batch contract, usefulness."""

import dataclasses
import pathlib

import numpy as np
import pytest

from pkdot_jax.data import io as io_lib
from pkdot_jax.data import synthetic
from pkdot_jax.data.synthetic import generator, usefulness


def _record_bytes(data_dir, config_name):
  files = sorted(pathlib.Path(data_dir, "pkdot_synthetic", config_name).glob("*/*.array_record*"))
  assert files
  return b"".join(f.read_bytes() for f in files)


def test_fields_shapes_dtypes(tiny_binary):
  _, source = tiny_binary
  spec = synthetic.make_config("binary_tiny").spec
  assert len(source) == spec.num_subjects * spec.samples_per_subject == 60
  example = source[13]
  assert example["video"].dtype == np.uint8
  assert example["video"].shape == (spec.num_frames, spec.height, spec.width, 3)
  assert example["physio"].dtype == np.float32 and example["physio"].shape == (spec.physio_length, 2)
  assert example["audio"].dtype == np.float32 and example["audio"].shape == (spec.audio_length,)
  assert example["valence_arousal"].shape == (2,)
  assert np.all(np.abs(example["valence_arousal"]) <= 1.0)
  assert example["index"] == 13 and example["video_id"] == 13
  assert example["subject"] == 13 // spec.samples_per_subject
  assert source.dataset_info.metadata["physio_fs"] == 512


def test_same_seed_identical_bytes_and_reuse(tiny_binary, tmp_path):
  data_dir, _ = tiny_binary
  synthetic.prepare(tmp_path, "binary_tiny", seed=0)
  assert _record_bytes(tmp_path, "binary_tiny") == _record_bytes(data_dir, "binary_tiny")
  # Reuse: a second prepare does not rewrite the files.
  path = next(pathlib.Path(tmp_path, "pkdot_synthetic", "binary_tiny").glob("*/*.array_record*"))
  mtime = path.stat().st_mtime_ns
  synthetic.prepare(tmp_path, "binary_tiny", seed=0)
  assert path.stat().st_mtime_ns == mtime


def test_different_seed_differs(tiny_binary, tmp_path):
  data_dir, source = tiny_binary
  other = synthetic.prepare(tmp_path, "binary_tiny", seed=1)["train"]
  assert _record_bytes(tmp_path, "binary_tiny_seed1") != _record_bytes(data_dir, "binary_tiny")
  assert not np.array_equal(other[0]["video"], source[0]["video"])


@pytest.mark.parametrize("num_classes,subjects,per_subject", [(2, 3, 4), (5, 4, 10)])
def test_balance_and_subject_counts(num_classes, subjects, per_subject):
  spec = dataclasses.replace(synthetic.make_config("binary_tiny").spec, num_classes=num_classes,
                             num_subjects=subjects, samples_per_subject=per_subject)
  data = generator.generate_arrays(spec, seed=3)
  assert np.array_equal(np.unique(data["subject"]), np.arange(subjects))
  for s in range(subjects):
    labels = data["label"][data["subject"] == s]
    assert np.array_equal(np.bincount(labels, minlength=num_classes),
                          np.full(num_classes, per_subject // num_classes))
  # The label is the ordinal level of the latent intensity.
  levels = np.array([0, 4]) if num_classes == 2 else np.arange(5)
  assert np.array_equal(np.floor(data["intensity"] * 5).astype(int), levels[data["label"]])


def test_overrides_and_subjects_metadata(tmp_path):
  source = synthetic.prepare(tmp_path, "five_class_tiny", seed=0, num_subjects=3, samples_per_subject=5)["train"]
  assert len(source) == 15
  assert np.array_equal(io_lib.example_subjects(source), np.repeat(np.arange(3), 5))
  assert np.bincount([source[i]["label"] for i in range(15)]).tolist() == [3] * 5


def test_bad_config_arguments(tmp_path):
  with pytest.raises(ValueError, match="config_name"):
    synthetic.prepare(tmp_path, "three_class")
  with pytest.raises(ValueError, match="unknown SyntheticSpec overrides"):
    synthetic.prepare(tmp_path, "binary", frames=3)
  with pytest.raises(ValueError, match="samples_per_subject"):
    synthetic.prepare(tmp_path, "five_class", samples_per_subject=7)


def test_privileged_signal_is_useful():
  """Linear probes, subject-disjoint: video above chance, video + physio clearly above video."""
  spec = generator.SyntheticSpec(num_classes=2, num_subjects=12, samples_per_subject=20)
  acc = usefulness.evaluate(spec, seed=0, num_folds=3)
  assert acc["video"] > 0.6
  assert acc["video+physio"] > acc["video"] + 0.12
  assert acc["video+audio"] > acc["video"] + 0.08


def test_a_set_larger_than_tfds_shuffle_buffer_builds_without_tensorflow(tmp_path, monkeypatch):
  """tfds spills its shuffle buffer to bucket files through tf.io.gfile past MAX_MEM_BUFFER_SIZE (1 GB; a
  BioVid-sized set is about 2 GB). Without TensorFlow the builder keeps the buffer in memory: with the
  threshold at one byte, the set still builds, with the same records as a build under the default threshold."""
  import importlib.util
  from tensorflow_datasets.core import shuffle
  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("TensorFlow installed: tfds spills through it as usual")
  reference = synthetic.prepare(tmp_path / "default", "binary_tiny", seed=0)["train"]
  monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1)
  built = synthetic.prepare(tmp_path / "tiny_buffer", "binary_tiny", seed=0)["train"]
  assert shuffle.MAX_MEM_BUFFER_SIZE == 1  # restored after the build
  assert len(built) == len(reference) > 0
  for i in range(len(reference)):
    for key, value in reference[i].items():
      np.testing.assert_array_equal(np.asarray(built[i][key]), np.asarray(value))
