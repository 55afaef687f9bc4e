"""affwild2 builder on a fake layout: -5 frames never targets, audio aligned and shared by _left/_right."""

import numpy as np
import pytest

from pkdot_jax.data import affwild2
from pkdot_jax.data import io as io_lib
import fakes  # tests/data is on sys.path (pytest rootdir-relative import mode)

SMALL = dict(num_frames=4, height=8, width=8, clip_stride=1, audio_fs=8000, nominal_fps=10.0)


def test_last_frame_targets_and_audio(tmp_path):
  fakes.write_affwild2(tmp_path / "manual")
  sources = affwild2.prepare(tmp_path / "data", tmp_path / "manual", "va_last", **SMALL)
  train, val = sources["train"], sources["validation"]
  # Clip ends 4..20, minus the -5 frames (4, 8, 12, 16, 20): 12 clips per video.
  assert len(train) == 3 * 12 and len(val) == 12
  for i in range(len(train)):
    example = train[i]
    frame = example["frame"]
    assert frame % 4 != 0 and frame >= 4
    np.testing.assert_allclose(example["valence_arousal"], [(frame % 7) / 10, -(frame % 5) / 10], atol=1e-6)
    assert example["video"].shape == (4, 8, 8, 3) and example["audio"].shape == (3200,)
  assert sorted(set(io_lib.example_subjects(train).tolist())) == [0, 1, 2]
  left = [train[i] for i in range(len(train)) if train[i]["video_name"] == b"vidB_left"]
  right = [train[i] for i in range(len(train)) if train[i]["video_name"] == b"vidB_right"]
  np.testing.assert_array_equal(left[3]["audio"], right[3]["audio"])  # shared audio track
  assert np.abs(left[-1]["audio"]).max() > 0.1  # the 440 Hz tone, aligned inside the recording


def test_every_frame_targets_mask_no_label(tmp_path):
  fakes.write_affwild2(tmp_path / "manual", videos={"train": ["vidA"], "validation": ["vidC"]})
  train = affwild2.prepare(tmp_path / "data", tmp_path / "manual", "va_every", **SMALL)["train"]
  for i in range(len(train)):
    example = train[i]
    numbers = np.arange(example["frame"] - 3, example["frame"] + 1)
    np.testing.assert_array_equal(example["va_mask"], numbers % 4 != 0)
    assert np.all(example["valence_arousal"][~example["va_mask"]] == 0.0)
    assert np.all(np.abs(example["valence_arousal"]) <= 1.0)


def test_bad_annotation_and_missing_audio(tmp_path):
  root = fakes.write_affwild2(tmp_path / "manual", videos={"train": ["vidA", "vidD", "vidE"], "validation": ["vidC"]})
  bad_file = root / "annotations/VA_Estimation_Challenge/Train_Set/vidA.txt"
  bad_file.write_text("valence,arousal\n0.1,nan\n")
  with pytest.raises(io_lib.BadInputError, match="vidA.txt: 1 NaN/Inf"):
    affwild2.prepare(tmp_path / "data", root, "va_last", **SMALL)
  (root / "videos/vidD.mp4").unlink()
  sources = affwild2.prepare(tmp_path / "data", root, "va_last", **SMALL, skip_bad=True)
  skipped = sources["train"].dataset_info.metadata["skipped"]
  assert len(skipped) == 2 and "vidA.txt" in skipped[0] and "vidD.mp4" in skipped[1]
  assert len(sources["train"]) == 12
  assert sources["train"][0]["video_name"] == b"vidE"
