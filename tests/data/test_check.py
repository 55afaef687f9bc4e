"""`pkdot data check` on fake BioVid and Aff-Wild2 layouts: every bad file named with its reason, the counts and
folds of what is usable, the size estimate against a real preparation, and the exit codes of the command."""

import numpy as np
import pytest

from pkdot_jax import configs
from pkdot_jax.data import check
from pkdot_jax.data import io as io_lib
import cli_runner  # tests/ and tests/data are on sys.path (pytest rootdir-relative import mode)
import fakes

SUBJECTS = ("071309_w_21", "072514_m_27", "080309_m_29", "080314_w_25")


def _config(name, manual_dir, **overrides):
  config = configs.load(configs.resolve(name))
  config.data.manual_dir = str(manual_dir)
  with config.unlocked():
    for key, value in overrides.items():
      config.data.overrides[key] = value
  return config


def _run(config):
  lines = []
  try:
    check.run(config, out=lines.append)
  except ValueError as error:
    return lines, str(error)
  return lines, None


def _break_biovid(part):
  """Five bad samples of five kinds; returns {file fragment: reason fragment}."""
  fakes.truncate(part / "frames/071309_w_21/071309_w_21-PA4-001/img_00001.jpg", 0.5)
  fakes.write_bio_csv(part / "biosignals_filtered/072514_m_27/072514_m_27-BL1-002_bio.csv",
                      columns=("t", "gsr", "ecg", "emg_trapezius"))
  fakes.edit_samples_csv(part, "080309_m_29-PA4-001", class_id=0)
  (part / "biosignals_filtered/080314_w_25/080314_w_25-BL1-001_bio.csv").unlink()
  # One sample as a (truncated) video instead of frames: the builder falls back to video/ when frames/ lacks it.
  sample = "072514_m_27-PA4-001"
  for f in (part / "frames/072514_m_27" / sample).glob("*.jpg"):
    f.unlink()
  (part / "frames/072514_m_27" / sample).rmdir()
  fakes.write_mp4(part / "video/072514_m_27" / f"{sample}.mp4", 12)
  fakes.truncate(part / "video/072514_m_27" / f"{sample}.mp4", 0.3)
  return {"071309_w_21-PA4-001/img_00001.jpg": "cannot decode JPEG frame",
          "072514_m_27-BL1-002_bio.csv": "missing column(s) ['time']",
          "samples.csv": "line 12: the class fields contradict each other: class_id '0' = BL1",
          "080314_w_25-BL1-001_bio.csv": "missing",
          "072514_m_27-PA4-001.mp4": "cannot decode video"}


def _bad_lines(lines):
  start = next(i for i, line in enumerate(lines) if line.startswith("bad files:"))
  return [line for line in lines[start + 1:] if line.startswith("  ")]


def test_biovid_every_bad_file_named_and_refused(tmp_path):
  part = fakes.write_biovid(tmp_path / "manual", subjects=SUBJECTS, layout="frames", num_frames=6)
  expected = _break_biovid(part)
  lines, error = _run(_config("biovid_binary:smoke", tmp_path / "manual"))
  bad = _bad_lines(lines)
  assert len(bad) == len(expected), bad
  for fragment, reason in expected.items():
    assert any(fragment in line and reason in line for line in bad), (fragment, bad)
  assert error is not None and error.startswith("5 bad file(s), the first ")
  assert lines[-1] == "result: cannot be built as configured"
  # 4 subjects x (BL1, PA4) x 2 trials = 16 listed; the contradicting row is not listed, 4 more fail to load.
  assert "train: 4 subjects, 11 usable of 15 listed samples" in lines
  assert not (tmp_path / "manual" / "data").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["manual"]


def test_biovid_skip_bad_builds_and_folds_cover_the_usable_samples(tmp_path):
  part = fakes.write_biovid(tmp_path / "manual", subjects=SUBJECTS, layout="frames", num_frames=6)
  _break_biovid(part)
  lines, error = _run(_config("biovid_binary:smoke", tmp_path / "manual", skip_bad=True))
  assert error is None, error
  assert "  samples per class: BL1 6, PA4 5" in lines
  assert any(line.startswith("bad files: 5, skipped (skip_bad=True)") for line in lines)
  folds = [line for line in lines if "fold " in line and "|" in line]
  assert len(folds) == 3 and sum(line.startswith(" *") for line in folds) == 1
  tests = [int(line.split("| test ")[1].split(" subjects, ")[1].split(" samples")[0]) for line in folds]
  assert sum(tests) == 11  # every usable sample is tested in exactly one fold
  assert lines[-1] == "result: the set can be built as configured"


def test_size_estimate_matches_the_prepared_set(tmp_path):
  fakes.write_biovid(tmp_path / "manual", subjects=SUBJECTS[:3], layout="frames", num_frames=6)
  # Records of ~40 KB, so that the array_record file's padding (to 64 KiB) stays small against their sum.
  config = _config("biovid_binary:smoke", tmp_path / "manual", height=64, width=64)
  found = check.scan_download(config)
  lines, errors = check.report(config, found)
  assert not errors
  estimate = sum(len(s.subjects) * np.mean(s.sizes) for s in found.splits.values())
  from pkdot_jax.data import biovid
  biovid.prepare(tmp_path / "data", tmp_path / "manual", "binary", **dict(config.data.overrides))
  records = sum(p.stat().st_size for p in (tmp_path / "data").rglob("*array_record*"))
  assert 0.8 < estimate / records < 1.25, (estimate, records)
  assert any(line.startswith("estimated prepared size: ") for line in lines)


def test_biovid_without_samples_csv_is_refused(tmp_path):
  part = fakes.write_biovid(tmp_path / "manual", subjects=SUBJECTS[:2], trials=1, layout="frames", num_frames=6)
  (part / "samples.csv").unlink()
  lines, error = _run(_config("biovid_binary:smoke", tmp_path / "manual"))
  assert error is not None and "no samples.csv" in error
  assert any(line.startswith("refused: biovid: no samples.csv") for line in lines)


def test_folds_that_cannot_be_made_are_refused(tmp_path):
  fakes.write_biovid(tmp_path / "manual", subjects=SUBJECTS[:2], trials=1, layout="frames", num_frames=6)
  lines, error = _run(_config("biovid_binary:smoke", tmp_path / "manual"))  # 3 folds, 2 subjects
  assert error is not None and "num_folds (3) exceeds the number of distinct subjects (2)" in error
  assert "bad files: none" in lines


def test_affwild2_bad_files_named(tmp_path):
  root = fakes.write_affwild2(tmp_path / "manual", videos={"train": ["vidA", "vidB", "vidE", "vidF"],
                                                           "validation": ["vidC", "vidD"]})
  ann = root / "annotations/VA_Estimation_Challenge"
  lines = (ann / "Train_Set/vidA.txt").read_text().splitlines()
  (ann / "Train_Set/vidA.txt").write_text("\n".join(lines[:15]) + "\n")  # 14 frame lines, 20 crops
  fakes.truncate(root / "cropped_aligned/vidB/00008.jpg", 0.5)
  fakes.truncate(root / "videos/vidE.mp4", 0.2)
  (root / "videos/vidD.mp4").unlink()
  config = _config("affwild2_va:smoke", root)
  result, error = _run(config)
  bad = _bad_lines(result)
  expected = {"vidA.txt": "14 frame lines, but", "vidB/00008.jpg": "cannot decode JPEG crop",
              "vidE.mp4": "cannot decode raw video audio track", "vidD.mp4": "raw video (audio of vidD) missing"}
  assert len(bad) == len(expected), bad
  for fragment, reason in expected.items():
    assert any(fragment in line and reason in line for line in bad), (fragment, bad)
  assert error is not None and "bad file(s)" in error
  with config.unlocked():
    config.data.overrides["skip_bad"] = True
  result, error = _run(config)
  assert error is None, error
  assert any(line.startswith("official split") for line in result)


def test_affwild2_builder_refuses_a_short_annotation(tmp_path):
  from pkdot_jax.data import affwild2
  root = fakes.write_affwild2(tmp_path / "manual")
  path = root / "annotations/VA_Estimation_Challenge/Train_Set/vidA.txt"
  path.write_text("\n".join(path.read_text().splitlines()[:11]) + "\n")
  with pytest.raises(io_lib.BadInputError, match=r"vidA.txt: 10 frame lines, but .*vidA has a crop of frame 20"):
    affwild2.prepare(tmp_path / "data", root, "va_last", num_frames=4, height=16, width=16)


def _pkdot(*args):
  """`pkdot ARGS` as `python -m pkdot_jax.main`, forked from the test runner's warm process (tests/cli_runner.py)."""
  return cli_runner.pkdot(*args, timeout=300)


def test_command_exit_codes(tmp_path):
  """One process for a good and one for a bad set: report on stdout; exit 0, or 2 with one error line."""
  fakes.write_biovid(tmp_path / "good", subjects=SUBJECTS[:3], trials=1, layout="frames", num_frames=6)
  part = fakes.write_biovid(tmp_path / "bad", subjects=SUBJECTS[:3], trials=1, layout="frames", num_frames=6)
  fakes.truncate(part / "frames/071309_w_21/071309_w_21-PA4-001/img_00003.jpg", 0.5)  # decoded: frames 1, 3, 4, 6
  good = _pkdot("data", "check", "--config=biovid_binary:smoke", f"--config.data.manual_dir={tmp_path / 'good'}")
  assert good.returncode == 0, good.stderr
  assert "result: the set can be built as configured" in good.stdout and "error" not in good.stderr
  bad = _pkdot("data", "check", "--config=biovid_binary:smoke", f"--config.data.manual_dir={tmp_path / 'bad'}")
  errors = [line for line in bad.stderr.splitlines() if line.strip()]
  assert bad.returncode == 2 and len(errors) == 1 and errors[0].startswith("pkdot: error: 1 bad file(s)")
  assert "071309_w_21-PA4-001/img_00003.jpg: cannot decode JPEG frame" in bad.stdout
  assert "img_00003.jpg" in errors[0]
