"""biovid builder on fake Part A layouts (mp4 videos and pre-extracted frames); each bad input errors."""

import numpy as np
import pytest

from pkdot_jax.data import biovid
from pkdot_jax.data import io as io_lib
import fakes  # tests/data is on sys.path (pytest rootdir-relative import mode)

SMALL = dict(num_frames=4, height=16, width=16, window_length=512)


@pytest.mark.parametrize("layout", ["video", "frames"])
def test_prepare_fake_layout(tmp_path, layout):
  fakes.write_biovid(tmp_path / "manual", layout=layout, levels=(0, 1, 4))
  source = biovid.prepare(tmp_path / "data", tmp_path / "manual", "binary", **SMALL)["train"]
  assert len(source) == 3 * 2 * 2  # 3 subjects x (BL1, PA4) x 2 trials; PA1 not in the binary config
  example = source[5]
  assert example["video"].shape == (4, 16, 16, 3) and example["video"].dtype == np.uint8
  assert example["physio"].shape == (512, 3) and example["physio"].dtype == np.float32
  labels = [source[i]["label"] for i in range(len(source))]
  names = [source[i]["sample_name"].decode() for i in range(len(source))]
  assert all(label == (1 if "-PA4-" in name else 0) for label, name in zip(labels, names))
  assert np.array_equal(io_lib.example_subjects(source), np.repeat([0, 1, 2], 4))
  assert source[0]["subject_name"].decode() == "071309_w_21"
  # Physio columns picked by name from the tab-separated CSV, window from the start.
  raw = np.loadtxt(tmp_path / "manual/PartA/biosignals_filtered/071309_w_21/071309_w_21-BL1-001_bio.csv",
                   skiprows=1, delimiter="\t")
  np.testing.assert_allclose(source[0]["physio"], raw[:512, 1:4], rtol=1e-6)


def test_five_class_labels(tmp_path):
  fakes.write_biovid(tmp_path / "manual", subjects=("071309_w_21", "072514_m_27"), levels=(0, 1, 2, 3, 4),
                     trials=1, layout="frames", num_frames=5)
  source = biovid.prepare(tmp_path / "data", tmp_path / "manual", "five_class", **SMALL)["train"]
  assert sorted(source[i]["label"] for i in range(len(source))) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_missing_manual_dir_gives_instructions(tmp_path):
  with pytest.raises(AssertionError, match="samples.csv"):
    biovid.prepare(tmp_path / "data", tmp_path / "nowhere", "binary", **SMALL)


def _break_and_prepare(tmp_path, breaker, **kwargs):
  part = fakes.write_biovid(tmp_path / "manual", subjects=("071309_w_21", "072514_m_27"), trials=1,
                            layout="frames", num_frames=6)
  target = breaker(part)
  return target, lambda **kw: biovid.prepare(tmp_path / "data", tmp_path / "manual", "binary",
                                             **{**SMALL, **kwargs, **kw})


@pytest.mark.parametrize("breaker,problem", [
    (lambda p: (p / "biosignals_filtered/071309_w_21/071309_w_21-PA4-001_bio.csv").unlink()
     or "071309_w_21-PA4-001_bio.csv", "missing"),
    (lambda p: fakes.write_bio_csv(p / "biosignals_filtered/071309_w_21/071309_w_21-PA4-001_bio.csv",
                                   columns=("time", "gsr", "ecg")) or "071309_w_21-PA4-001_bio.csv",
     r"missing column\(s\) \['emg_trapezius'\]"),
    (lambda p: fakes.write_bio_csv(p / "biosignals_filtered/071309_w_21/071309_w_21-PA4-001_bio.csv",
                                   nan_at=7) or "071309_w_21-PA4-001_bio.csv", "NaN/Inf"),
    (lambda p: fakes.write_bio_csv(p / "biosignals_filtered/071309_w_21/071309_w_21-PA4-001_bio.csv",
                                   num_samples=100) or "071309_w_21-PA4-001_bio.csv", "fewer than window_length"),
    (lambda p: [f.unlink() for f in sorted((p / "frames/071309_w_21/071309_w_21-PA4-001").glob("*.jpg"))[3:]]
     and "071309_w_21-PA4-001", "fewer than num_frames"),
])
def test_bad_inputs_error_or_counted_skip(tmp_path, breaker, problem):
  target, prepare = _break_and_prepare(tmp_path, breaker)
  with pytest.raises(io_lib.BadInputError, match=problem) as error:
    prepare()
  assert target in str(error.value)
  source = prepare(skip_bad=True)["train"]
  assert len(source) == 3
  skipped = source.dataset_info.metadata["skipped"]
  assert len(skipped) == 1 and target in skipped[0]
