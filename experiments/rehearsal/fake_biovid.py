"""A full-size fake BioVid Part A download (87 subjects x 5 classes x 20 samples), to rehearse `pkdot data check`,
preparation and loading at the paper's sizes before the real (licence-gated) data is at hand.

The layout is the builder's frames layout (what the authors used): `PartA/samples.csv` (tab-separated, the
official columns), `biosignals_filtered/<subject>/<sample>_bio.csv` (time in microseconds, gsr, ecg,
emg_trapezius; 5.5 s at 512 Hz = 2816 rows) and `frames/<subject>/<sample>/img_00001.jpg ...` face-crop-sized
JPEGs. The official clips have 75 frames (5.5 s at 25 fps -> 138 frames, of which the face crops kept 75); the
builder decodes only `num_frames` of them, spread uniformly, so `--frames` may store fewer (the default 10 stores
exactly the frames a 10-frame preparation decodes; the file listing and the disk then cover 10 of 75 frames).
Frames are smooth moving shapes with mild noise (JPEG and zlib sizes like real face crops, not like white
noise). Deterministic in `--seed`. Run:

  python -m experiments.rehearsal.fake_biovid --out=/tmp/rehearsal/manual [--subjects=87] [--frames=10]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "data"))
import fakes  # noqa: E402  (the fake-layout writers of the data tests: the _bio.csv format)

LEVEL_NAMES = ("BL1", "PA1", "PA2", "PA3", "PA4")
SAMPLES_HEADER = "subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name"
BIO_ROWS = 2816  # 5.5 s at 512 Hz


def subject_names(count: int, seed: int = 0) -> list[str]:
  """BioVid-style names <date>_<w|m>_<age>, e.g. 071309_w_21, distinct."""
  rng = np.random.default_rng(seed)
  names = []
  for k in range(count):
    date = f"{(k // 28) % 12 + 1:02d}{k % 28 + 1:02d}{9 + k // 336:02d}"
    names.append(f"{date}_{'wm'[int(rng.integers(2))]}_{int(rng.integers(18, 66))}")
  if len(set(names)) != count:
    raise AssertionError("subject names repeat")
  return names


def face_frames(num_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
  """(T, size, size, 3) uint8: a lit ellipse on a gradient, drifting a few pixels over the clip, plus noise."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
  base = rng.uniform(60, 200, 3).astype(np.float32)
  tone = rng.uniform(120, 230, 3).astype(np.float32)
  drift = rng.normal(0, 0.01, 2)
  out = np.empty((num_frames, size, size, 3), np.uint8)
  for t in range(num_frames):
    cy, cx = 0.5 + drift[0] * t, 0.5 + drift[1] * t
    inside = ((y - cy) / 0.38) ** 2 + ((x - cx) / 0.3) ** 2 < 1.0
    image = base[None, None] * (0.6 + 0.4 * y[..., None]) + inside[..., None] * (tone - base)[None, None] * 0.8
    image += rng.normal(0, 4, image.shape)
    out[t] = np.clip(image, 0, 255).astype(np.uint8)
  return out


def write_sample(part: pathlib.Path, subject: str, sample: str, frames: int, size: int, seed: int) -> None:
  rng = np.random.default_rng(seed)
  fakes.write_bio_csv(part / "biosignals_filtered" / subject / f"{sample}_bio.csv", BIO_ROWS, seed=seed)
  folder = part / "frames" / subject / sample
  folder.mkdir(parents=True, exist_ok=True)
  for i, image in enumerate(face_frames(frames, size, rng), start=1):
    Image.fromarray(image).save(folder / f"img_{i:05d}.jpg", quality=90)


def write(out, subjects: int = 87, trials: int = 20, frames: int = 10, size: int = 160, seed: int = 0,
          log=None) -> pathlib.Path:
  """Writes <out>/PartA (samples.csv last, so an interrupted run has no samples.csv); returns the part folder."""
  part = pathlib.Path(out) / "PartA"
  rows, sample_id = [SAMPLES_HEADER], 0
  for s, subject in enumerate(subject_names(subjects, seed)):
    for level, level_name in enumerate(LEVEL_NAMES):
      for trial in range(trials):
        sample = f"{subject}-{level_name}-{trial + 1:03d}"
        write_sample(part, subject, sample, frames, size, seed=seed * 1_000_003 + sample_id)
        rows.append(f"{s}\t{subject}\t{level}\t{level_name}\t{sample_id}\t{sample}")
        sample_id += 1
    if log:
      log(f"subject {s + 1}/{subjects} written")
  (part / "samples.csv").write_text("\n".join(rows) + "\n")
  return part


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="the manual dir to create (PartA goes inside)")
  parser.add_argument("--subjects", type=int, default=87)
  parser.add_argument("--trials", type=int, default=20, help="samples per class and subject")
  parser.add_argument("--frames", type=int, default=10, help="JPEG frames stored per sample (official: 75)")
  parser.add_argument("--size", type=int, default=160, help="face-crop side in pixels")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if pathlib.Path(args.out, "PartA", "samples.csv").exists():
    parser.error(f"{args.out}/PartA already holds a layout; remove it or pass another --out")
  start = time.perf_counter()
  write(args.out, args.subjects, args.trials, args.frames, args.size, args.seed,
        log=lambda text: print(text, file=sys.stderr, flush=True))
  print(json.dumps({"subjects": args.subjects, "samples": args.subjects * args.trials * 5, "frames": args.frames,
                    "size": args.size, "wall_s": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
  main()
