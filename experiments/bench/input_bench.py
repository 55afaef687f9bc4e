"""Input-pipeline throughput: examples/s of make_loader on the synthetic set and a fake Biovid set.

Measures (a) the synthetic "binary" set (8 x 32 x 32 clips + physio + audio), (b) a fake Biovid set of
10 x 112 x 112 clips + 3-channel 5.5 s physio stored in array_record (decoded clips cached), each with the standard
training transforms (random flip + normalise to float32) and 0 / 2 grain worker processes, and (c) decoding the
same clips from JPEG frames (what the builder pays once, or a loader without a cache pays every epoch).
Prints one JSON object. Run:  python -m experiments.bench.input_bench [--workers 0 2] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

from pkdot_jax.data import biovid, loader, media, synthetic, transforms

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "data"))
import fakes  # noqa: E402  (the fake-layout writers of the data tests)


def _cpu_name() -> str:
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def _throughput(source, batch_size, workers, chain, num_epochs):
  batches = loader.make_loader(source, batch_size=batch_size, seed=0, num_epochs=num_epochs, transforms=chain,
                               worker_count=workers, drop_remainder=True)
  iterator = iter(batches)
  next(iterator)  # start-up (worker spawn, first reads) excluded
  start, count = time.perf_counter(), 0
  for batch in iterator:
    count += batch["video"].shape[0]
  return count / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
  parser.add_argument("--biovid_samples", type=int, default=96)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  chain = [transforms.RandomFlip(), transforms.Normalize()]
  results = {"hardware": f"{_cpu_name()}, {os.cpu_count()} cores", "examples_per_s": {}}
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    syn = synthetic.prepare(pathlib.Path(tmp, "syn"), "binary", seed=0)["train"]
    results["synthetic_prepare_s"] = round(time.perf_counter() - start, 2)
    trials = max(1, args.biovid_samples // 8)
    part = fakes.write_biovid(pathlib.Path(tmp, "manual"), subjects=("s1_w_20", "s2_m_30", "s3_w_40", "s4_m_50"),
                              trials=trials, layout="frames", num_frames=75, bio_samples=2816)
    # Re-encode the frames at 112 x 112 (write_biovid writes small frames).
    for folder in sorted(part.glob("frames/*/*")):
      fakes.write_jpegs(folder, 75, 112, 112)
    start = time.perf_counter()
    bio = biovid.prepare(pathlib.Path(tmp, "bio"), pathlib.Path(tmp, "manual"), "binary", num_frames=10,
                         height=112, width=112)["train"]
    prepare_s = time.perf_counter() - start
    results["biovid_prepare_clips_per_s"] = round(len(bio) / prepare_s, 1)
    folders = sorted(part.glob("frames/*/*"))[:16]
    start = time.perf_counter()
    for folder in folders:
      files = sorted(folder.glob("img_*.jpg"))
      np.stack([media.read_image(files[i]) for i in transforms.frame_indices(len(files), 10)])
    results["jpeg_decode_clips_per_s_1core"] = round(len(folders) / (time.perf_counter() - start), 1)
    for workers in args.workers:
      results["examples_per_s"][f"synthetic_8x32x32_workers{workers}"] = round(
          _throughput(syn, 64, workers, chain, num_epochs=3), 1)
      results["examples_per_s"][f"biovid_10x112x112_workers{workers}"] = round(
          _throughput(bio, 16, workers, chain, num_epochs=3), 1)
  text = json.dumps(results, indent=1)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
  main()
