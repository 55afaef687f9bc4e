"""The rehearsal's full-size fake BioVid generator, at two subjects: the builder reads its layout as a real one."""

import numpy as np

from experiments.rehearsal import fake_biovid
from pkdot_jax.data import biovid
from pkdot_jax.data import io as io_lib


def test_two_subjects_prepare_at_paper_shapes(tmp_path):
  part = fake_biovid.write(tmp_path / "manual", subjects=2, trials=1, frames=10, size=32)
  rows = (part / "samples.csv").read_text().splitlines()
  assert rows[0] == fake_biovid.SAMPLES_HEADER and len(rows) == 1 + 2 * 5
  bio = np.loadtxt(next(part.glob("biosignals_filtered/*/*_bio.csv")), skiprows=1, delimiter="\t")
  assert bio.shape == (2816, 4)  # time + 3 Part A channels, 5.5 s at 512 Hz
  # The builder's own scan: every sample listed, nothing bad.
  bad = io_lib.BadInputLog("biovid", skip_bad=True, warn=False)
  found = biovid.scan(tmp_path / "manual", biovid.make_config("five_class"), bad)
  assert len(found.samples) == 10 and len(found.subject_names) == 2 and not bad.problems
  source = biovid.prepare(tmp_path / "data", tmp_path / "manual", "five_class", num_frames=10, height=112,
                          width=112)["train"]
  assert len(source) == 10 and sorted(source[i]["label"] for i in range(10)) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
  example = source[3]
  assert example["video"].shape == (10, 112, 112, 3) and example["physio"].shape == (2816, 3)
  frames = example["video"].astype(np.float32)
  assert frames.std() > 10 and np.abs(np.diff(frames, axis=0)).mean() > 0  # a picture that moves, not a constant
  # Deterministic in the seed: a second layout is byte-identical.
  again = fake_biovid.write(tmp_path / "again", subjects=2, trials=1, frames=10, size=32)
  for path in sorted(part.rglob("*.*"))[:6]:
    assert (again / path.relative_to(part)).read_bytes() == path.read_bytes()
