"""biovid builder on fake Part A layouts (mp4 videos and pre-extracted frames); each bad input errors."""

import json
import shutil

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
    # A frames folder without any frame says how frames are named.
    (lambda p: [f.unlink() for f in (p / "frames/071309_w_21/071309_w_21-PA4-001").glob("*.jpg")]
     and "071309_w_21-PA4-001", r"clip has 0 frames.*img_00001\.jpg"),
    # Truncated JPEGs: cut in the header (fails on open) and in the scan (fails only on load); the frame is named.
    (lambda p: [fakes.truncate(f, 0.5) for f in (p / "frames/071309_w_21/071309_w_21-PA4-001").glob("*.jpg")]
     and "071309_w_21-PA4-001/img_0000", r"img_0000\d\.jpg: cannot decode JPEG frame: OSError"),
    (lambda p: [fakes.truncate(f, 0.9) for f in (p / "frames/071309_w_21/071309_w_21-PA4-001").glob("*.jpg")]
     and "071309_w_21-PA4-001/img_0000", r"img_0000\d\.jpg: cannot decode JPEG frame: OSError.*truncated"),
    (lambda p: [fakes.garbage(f) for f in (p / "frames/071309_w_21/071309_w_21-PA4-001").glob("*.jpg")]
     and "071309_w_21-PA4-001/img_0000", r"cannot decode JPEG frame: UnidentifiedImageError"),
    # Frames of one clip with different sizes (frame_indices(6, 4) picks frames 1, 3, 4 (now 20x20) and 6).
    (lambda p: fakes.write_jpegs(p / "frames/071309_w_21/071309_w_21-PA4-001", 4, 20, 20)
     or "071309_w_21-PA4-001/img_00006.jpg", r"frame is 24x24 .* but img_00001\.jpg of the same clip is 20x20"),
    # _bio.csv: empty, short row, non-numeric value, wrong time unit, time going backwards, no time column.
    (lambda p: (p / "biosignals_filtered/071309_w_21/071309_w_21-PA4-001_bio.csv").write_text("")
     or "071309_w_21-PA4-001_bio.csv", "unreadable: empty file"),
    (lambda p: _edit_bio(p, 10, lambda row: row[:2]) or "071309_w_21-PA4-001_bio.csv",
     r"line 12: no 'ecg' field \(the row has 2 fields, the header 4\)"),
    (lambda p: _edit_bio(p, 20, lambda row: [row[0], row[1], "n/a", row[3]]) or "071309_w_21-PA4-001_bio.csv",
     r"line 22: field 'ecg' is 'n/a', not a number"),
    (lambda p: _edit_bio(p, None, lambda row: [f"{int(row[0]) / 1e6:.6f}", *row[1:]])
     or "071309_w_21-PA4-001_bio.csv", r"column 'time' advances 0.001953 per sample, expected 1953.12"),
    (lambda p: _edit_bio(p, 30, lambda row: ["0", *row[1:]]) or "071309_w_21-PA4-001_bio.csv",
     r"line 32: field 'time' is 0, not after the previous line's 56637"),
    (lambda p: fakes.write_bio_csv(p / "biosignals_filtered/071309_w_21/071309_w_21-PA4-001_bio.csv",
                                   columns=("t", "gsr", "ecg", "emg_trapezius")) or "071309_w_21-PA4-001_bio.csv",
     r"missing column\(s\) \['time'\]"),
    # samples.csv rows: a bad class id, a short row, a class id or subject contradicting the name, a repeat.
    (lambda p: fakes.edit_samples_csv(p, "071309_w_21-PA4-001", class_id="4.0") or "samples.csv",
     r"samples.csv: line 3: field 'class_id' of '071309_w_21-PA4-001' is '4.0', not a class id 0..4"),
    (lambda p: fakes.edit_samples_csv(p, "071309_w_21-PA4-001", class_id=None) or "samples.csv",
     r"samples.csv: line 3: no 'sample_name' field \(the row has 2 fields, the header 6\)"),
    (lambda p: fakes.edit_samples_csv(p, "071309_w_21-PA4-001", class_id=0) or "samples.csv",
     r"samples.csv: line 3: the class fields contradict each other: class_id '0' = BL1, class_name 'PA4' = PA4, "
     r"sample_name '071309_w_21-PA4-001' = PA4"),
    (lambda p: fakes.edit_samples_csv(p, "071309_w_21-PA4-001", class_id=0, class_name="BL1") or "samples.csv",
     r"line 3: the class fields contradict .*sample_name '071309_w_21-PA4-001' = PA4"),
    (lambda p: fakes.edit_samples_csv(p, "071309_w_21-PA4-001", subject_name="072514_m_27") or "samples.csv",
     r"line 3: field 'subject_name' '072514_m_27' contradicts the sample name '071309_w_21-PA4-001'"),
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


def _edit_bio(part, row, edit):
  """Rewrites data row `row` (0-based, so on line row + 2; None: every row) of one _bio.csv with edit(fields)."""
  path = part / "biosignals_filtered/071309_w_21/071309_w_21-PA4-001_bio.csv"
  lines = path.read_text().splitlines()
  for k in range(1, len(lines)):
    if row is None or k == row + 1:
      lines[k] = "\t".join(edit(lines[k].split("\t")))
  path.write_text("\n".join(lines) + "\n")


def test_bad_mp4_names_the_file_and_is_skipped(tmp_path):
  part = fakes.write_biovid(tmp_path / "manual", subjects=("071309_w_21", "072514_m_27"), trials=1, num_frames=6)
  fakes.garbage(part / "video/071309_w_21/071309_w_21-PA4-001.mp4")
  fakes.write_mp4(part / "video/072514_m_27/072514_m_27-BL1-001.mp4", 2)  # fewer frames than num_frames
  with pytest.raises(io_lib.BadInputError, match=r"071309_w_21-PA4-001.mp4: cannot decode video: InvalidDataError"):
    biovid.prepare(tmp_path / "data", tmp_path / "manual", "binary", **SMALL)
  source = biovid.prepare(tmp_path / "data", tmp_path / "manual", "binary", **SMALL, skip_bad=True)["train"]
  skipped = source.dataset_info.metadata["skipped"]
  assert len(source) == 2 and len(skipped) == 2
  assert "071309_w_21-PA4-001.mp4: cannot decode video" in skipped[0]
  assert "072514_m_27-BL1-001.mp4: clip has 2 frames" in skipped[1]


def test_samples_csv_errors_name_file_line_field(tmp_path):
  path = tmp_path / "samples.csv"
  path.write_text("subject_name\tclass_id\tsample_name\n071309_w_21\tfour\t071309_w_21-PA4-006\n")
  with pytest.raises(io_lib.BadInputError, match=r"samples.csv: line 2: field 'class_id' .* is 'four'"):
    biovid.read_samples_csv(path, (0, 4))
  path.write_text("subject_name\tclass_id\tsample_name\n\n071309_w_21\t0\t071309_w_21-PA4-006\n")
  with pytest.raises(io_lib.BadInputError, match=r"line 3: .*class_id '0' = BL1, sample_name .* = PA4"):
    biovid.read_samples_csv(path, (0, 4))  # the blank line still counts
  bad = io_lib.BadInputLog("biovid", skip_bad=True)
  assert biovid.read_samples_csv(path, (0, 4), bad) == [] and len(bad.skipped) == 1
  path.write_text("sample_name\tclass_id\n071309_w_21-PA4-006\t4\n071309_w_21-PA4-006\t4\n")
  with pytest.raises(io_lib.BadInputError, match=r"line 3: sample '071309_w_21-PA4-006' is listed again \(first "
                     r"on line 2\)"):
    biovid.read_samples_csv(path, (0, 4))
  path.write_text("")
  with pytest.raises(io_lib.BadInputError, match="samples.csv: cannot read: empty file"):
    biovid.read_samples_csv(path, (0, 4))
  # Without class columns the class comes from the name; a name without a level cannot be placed.
  path.write_text("sample_name\n071309_w_21-PA1-001\nsomething_else\n")
  with pytest.raises(io_lib.BadInputError, match=r"line 3: cannot tell the class of sample 'something_else'"):
    biovid.read_samples_csv(path, (0, 1, 4))
  path.write_text("sample_name,class_name\n071309_w_21-PA1-001,PA1\n")  # comma-separated
  assert biovid.read_samples_csv(path, (0, 1, 4)) == [("071309_w_21", 1, "071309_w_21-PA1-001")]


def test_stale_prepared_set_is_refused(tmp_path, caplog):
  fakes.write_biovid(tmp_path / "a", subjects=("071309_w_21", "072514_m_27"), trials=1, layout="frames",
                     num_frames=6)
  fakes.write_biovid(tmp_path / "b", subjects=("080309_m_29",), trials=1, layout="frames", num_frames=6)
  data = tmp_path / "data"
  source = biovid.prepare(data, tmp_path / "a", "binary", **SMALL)["train"]
  assert len(source) == 4
  recorded = dict(source.dataset_info.metadata["source"])
  assert recorded["manual_dir"] == str(tmp_path / "a") and recorded["num_files"] == 1 + 4 * (1 + 6)
  assert recorded["options"]["window_length"] == 512 and recorded["options"]["levels"] == [0, 4]
  prepared = next((data / "biovid").glob("binary*/*"))
  # Another download into the same data_dir and config: refused, naming both sources and how to rebuild.
  with pytest.raises(io_lib.StaleDatasetError) as error:
    biovid.prepare(data, tmp_path / "b", "binary", **SMALL)
  message = str(error.value)
  assert f"prepared from {tmp_path / 'a'}, asked for {tmp_path / 'b'}" in message
  assert "file list (relative paths and sizes): prepared from 29 files" in message
  assert f"delete {prepared}" in message and "options" not in message
  # The same download again is reused (not rebuilt).
  mtime = prepared.stat().st_mtime_ns
  assert len(biovid.prepare(data, tmp_path / "a", "binary", **SMALL)["train"]) == 4
  assert prepared.stat().st_mtime_ns == mtime
  # A copy elsewhere: only the path differs, and the message says how to reuse.
  shutil.copytree(tmp_path / "a", tmp_path / "copy")
  with pytest.raises(io_lib.StaleDatasetError, match="file lists and options match") as error:
    biovid.prepare(data, tmp_path / "copy", "binary", **SMALL)
  assert "file list (" not in str(error.value) and f"pass manual_dir={tmp_path / 'a'}" in str(error.value)
  # A changed file in the recorded download (sizes differ), then a new sample.
  fakes.write_bio_csv(tmp_path / "a/PartA/biosignals_filtered/071309_w_21/071309_w_21-BL1-001_bio.csv", 700)
  with pytest.raises(io_lib.StaleDatasetError, match=r"file list .* prepared from 29 files, \d+ bytes, .* now has "
                     r"29 files") as error:
    biovid.prepare(data, tmp_path / "a", "binary", **SMALL)
  assert "manual dir:" not in str(error.value)
  # Options recorded at build time that differ from the config's now (e.g. a changed default).
  metadata_file = prepared / "metadata.json"
  metadata = json.loads(metadata_file.read_text())
  metadata["source"]["options"]["window_length"] = 256
  metadata_file.write_text(json.dumps(metadata))
  with pytest.raises(io_lib.StaleDatasetError, match="options: window_length prepared with 256, asked for 512"):
    biovid.prepare(data, tmp_path / "copy", "binary", **SMALL)
  # A prepared set without any record cannot be checked: refused.
  del metadata["source"]
  metadata_file.write_text(json.dumps(metadata))
  with pytest.raises(io_lib.StaleDatasetError, match="without a record"):
    biovid.prepare(data, tmp_path / "copy", "binary", **SMALL)
  # The recorded download deleted after preparing: reused, with a warning.
  source = biovid.prepare(tmp_path / "data2", tmp_path / "copy", "binary", **SMALL)["train"]
  shutil.rmtree(tmp_path / "copy")
  with caplog.at_level("WARNING"):
    assert len(biovid.prepare(tmp_path / "data2", tmp_path / "copy", "binary", **SMALL)["train"]) == 4
  assert "no longer holds the input files" in caplog.text


def test_a_bad_sample_met_while_writing_leaves_no_prepared_set(tmp_path):
  """Samples are decoded while the records are written: a bad one in the middle stops the build without leaving a
  half-written set that a later call would reuse; once the file is fixed the same call builds all of them."""
  part = fakes.write_biovid(tmp_path / "manual", layout="frames", num_frames=6)
  frame = part / "frames/080309_m_29/080309_m_29-PA4-002/img_00001.jpg"  # the last sample of samples.csv
  intact = frame.read_bytes()
  fakes.truncate(frame, 0.5)
  with pytest.raises(io_lib.BadInputError, match="080309_m_29-PA4-002/img_00001.jpg: cannot decode JPEG frame"):
    biovid.prepare(tmp_path / "data", tmp_path / "manual", "binary", **SMALL)
  assert not list((tmp_path / "data").rglob("*array_record*"))
  frame.write_bytes(intact)
  assert len(biovid.prepare(tmp_path / "data", tmp_path / "manual", "binary", **SMALL)["train"]) == 12
