"""affwild2 builder on a fake layout: -5 frames never targets, audio aligned and shared by _left/_right."""

import shutil

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


def _two_videos(tmp_path):
  return fakes.write_affwild2(tmp_path / "manual", videos={"train": ["vidA", "vidE"], "validation": ["vidC"]})


@pytest.mark.parametrize("breaker,problem", [
    (lambda crop: fakes.truncate(crop, 0.5), r"cannot decode JPEG crop: OSError: Truncated File Read"),
    (lambda crop: fakes.truncate(crop, 0.9), r"cannot decode JPEG crop: OSError: image file is truncated"),
    (lambda crop: fakes.garbage(crop), r"cannot decode JPEG crop: UnidentifiedImageError"),
    (lambda crop: fakes.write_jpegs(crop.parent, 1, 20, 20, pattern="00006.jpg"),
     r"crop is 20x20 \(width x height\) but 00003.jpg of the same clip is 16x16"),
])
def test_bad_crop_names_the_file_and_skips_its_clips(tmp_path, breaker, problem):
  root = _two_videos(tmp_path)
  crop = root / "cropped_aligned/vidA/00006.jpg"
  breaker(crop)
  with pytest.raises(io_lib.BadInputError, match="vidA/00006.jpg: " + problem):
    affwild2.prepare(tmp_path / "data", root, "va_last", **SMALL)
  train = affwild2.prepare(tmp_path / "data", root, "va_last", **SMALL, skip_bad=True)["train"]
  skipped = train.dataset_info.metadata["skipped"]
  assert len(skipped) == 1 and "vidA/00006.jpg" in skipped[0]
  # The clips ending at 6, 7 and 9 need frame 6: 2 x 12 - 3 left, numbered as written.
  assert len(train) == 21 and [train[i]["index"] for i in range(21)] == list(range(21))
  frames = [train[i]["frame"] for i in range(21) if train[i]["video_name"] == b"vidA"]
  assert frames == [5, 10, 11, 13, 14, 15, 17, 18, 19]
  assert io_lib.example_subjects(train).tolist() == [0] * 9 + [1] * 12


@pytest.mark.parametrize("breaker,problem", [
    (lambda video: fakes.garbage(video), r"vidA.mp4: cannot decode raw video audio track: InvalidDataError"),
    (lambda video: fakes.write_mp4(video, 20, 16, 16, fps=10), r"vidA.mp4: cannot decode raw video audio track: "
     r"ValueError: .*vidA.mp4: no audio stream"),
])
def test_bad_raw_video_names_the_file_and_is_skipped(tmp_path, breaker, problem):
  root = _two_videos(tmp_path)
  breaker(root / "videos/vidA.mp4")
  with pytest.raises(io_lib.BadInputError, match=problem):
    affwild2.prepare(tmp_path / "data", root, "va_every", **SMALL)
  sources = affwild2.prepare(tmp_path / "data", root, "va_every", **SMALL, skip_bad=True)
  train = sources["train"]
  assert len(train) == 12 and {train[i]["video_name"] for i in range(12)} == {b"vidE"}
  skipped = train.dataset_info.metadata["skipped"]
  assert len(skipped) == 1 and "vidA.mp4" in skipped[0]
  assert len(sources["validation"]) == 12 and sources["validation"].dataset_info.metadata["skipped"] == skipped


@pytest.mark.parametrize("text,problem", [
    ("", r"first line must be 'valence,arousal', got '\(empty file\)'"),
    ("arousal,valence\n0.1,0.2\n", r"first line must be 'valence,arousal', got 'arousal,valence'"),
    ("valence,arousal\n", "no annotation lines after the header"),
    ("valence,arousal\n0.1,0.2\n0.1,0.2,0.3\n", r"line 3: 3 field\(s\) '0.1,0.2,0.3', expected 2"),
    ("valence,arousal\n0.1,0.2\n0.1\n", r"line 3: 1 field\(s\) '0.1', expected 2"),
    ("valence,arousal\n0.1,0.2\n0.1,high\n", r"line 3: field 'arousal' is 'high', not a number"),
    ("valence,arousal\n0.1,0.2\n-5,-5\n0.1,inf\n", r"1 NaN/Inf value\(s\) in valence/arousal \(first on line 4, "
     r"field 'arousal'\)"),
    ("valence,arousal\n0.1,0.2\n-5,-5\n1.5,0.2\n", r"line 4: field 'valence' is 1.5, outside \[-1, 1\]"),
    ("valence,arousal\n0.1,0.2\n-4,-5\n", r"line 3: field 'valence' is -4, outside \[-1, 1\]"),
])
def test_annotation_errors_name_file_line_field(tmp_path, text, problem):
  path = tmp_path / "vid.txt"
  path.write_text(text)
  with pytest.raises(io_lib.BadInputError, match="vid.txt: " + problem):
    affwild2.read_annotation(path, io_lib.BadInputLog("affwild2", skip_bad=False))
  bad = io_lib.BadInputLog("affwild2", skip_bad=True)
  assert affwild2.read_annotation(path, bad) is None and len(bad.skipped) == 1


def test_missing_crops_folder_and_split_folder(tmp_path):
  root = _two_videos(tmp_path)
  shutil.rmtree(root / "cropped_aligned/vidA")
  with pytest.raises(io_lib.BadInputError, match=r"cropped_aligned/vidA: no cropped_aligned frames \(no such"):
    affwild2.prepare(tmp_path / "data", root, "va_last", **SMALL)
  shutil.rmtree(root / "annotations/VA_Estimation_Challenge/Validation_Set")
  with pytest.raises(io_lib.BadInputError, match=r"no Validation_Set folder in .*VA_Estimation_Challenge"):
    affwild2.prepare(tmp_path / "data", root, "va_last", **SMALL, skip_bad=True)


def test_stale_prepared_set_is_refused(tmp_path):
  a = fakes.write_affwild2(tmp_path / "a", videos={"train": ["vidA"], "validation": ["vidC"]})
  b = fakes.write_affwild2(tmp_path / "b", videos={"train": ["vidE"], "validation": ["vidC"]})
  train = affwild2.prepare(tmp_path / "data", a, "va_last", **SMALL)["train"]
  source = dict(train.dataset_info.metadata["source"])
  assert source["manual_dir"] == str(a) and source["num_files"] == 2 * 20 + 2 + 2  # crops, annotations, videos
  with pytest.raises(io_lib.StaleDatasetError, match=f"prepared from {a}, asked for {b}") as error:
    affwild2.prepare(tmp_path / "data", b, "va_last", **SMALL)
  assert "file list" in str(error.value) and "delete " + str(tmp_path / "data" / "affwild2") in str(error.value)
  assert len(affwild2.prepare(tmp_path / "data", a, "va_last", **SMALL)["train"]) == len(train)
  # A new crop under the same manual dir changes the file list.
  fakes.write_jpegs(a / "cropped_aligned/vidA", 21, 16, 16, pattern="{:05d}.jpg")
  with pytest.raises(io_lib.StaleDatasetError, match=r"file list .*44 files, .* now has 45 files"):
    affwild2.prepare(tmp_path / "data", a, "va_last", **SMALL)
