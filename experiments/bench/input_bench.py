"""Input-pipeline throughput: clips/s of make_loader on the synthetic set and a fake Biovid set.

Measures (a) the synthetic "binary" set (8 x 32 x 32 clips + physio + audio), (b) a fake Biovid set of
10 x 112 x 112 clips + 3-channel 5.5 s physio stored in array_record (decoded clips cached), each with the
trainer's training chain (random flip; clips stay uint8 and the model normalises them on the device) with 0 / N
worker processes, with 0 workers and one read thread (one core), and the former host chain (flip +
float32 normalisation on the host) with 0 workers in the same run, (c) the CPU ms per clip of one 0-worker
epoch by stage (read, inflate, parse, transforms, collation; cProfile), and (d) decoding the same clips from
JPEG frames (what the builder pays once, or a loader without a cache pays every epoch). Worker start-up is
excluded (timing starts after 2 batches per worker). Records the load average before and after (a loaded
machine cannot show worker scaling), the N-worker / 0-worker ratios (0 workers read with 2 threads, which
already run the inflation on two cores) and the ratios to the one-core rate, the host cores a 1,400 clips/s
accelerator step needs at the one-core rate, and the shared-memory entries left in /dev/shm after the loaders
are done (leaks). Prints one JSON object. Run:
  python -m experiments.bench.input_bench [--workers 0 1 2] [--clips 192] [--out bench.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pathlib
import platform
import pstats
import sys
import tempfile
import time

import numpy as np

from pkdot_jax.data import biovid, decode, loader, media, synthetic, transforms

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
  for _ in range(2 * max(1, workers)):  # start-up (worker spawn, first reads) excluded
    next(iterator)
  start, count = time.perf_counter(), 0
  for batch in iterator:
    count += batch["video"].shape[0]
  if count == 0:
    raise ValueError(f"no batch left to time with {workers} workers: raise --clips or --epochs")
  return count / (time.perf_counter() - start)


def _throughput_1thread(source, batch_size, chain, num_epochs):
  """0 workers with one read thread: the clips/s of one core (2 read threads also run the GIL-free inflation in
  parallel, so the 0-worker rate can use two cores)."""
  batches = loader.make_loader(source, batch_size=batch_size, seed=0, num_epochs=num_epochs, transforms=chain,
                               drop_remainder=True, read_threads=1)
  iterator = iter(batches)
  next(iterator)
  start, count = time.perf_counter(), 0
  for batch in iterator:
    count += batch["video"].shape[0]
  return count / (time.perf_counter() - start)


_STAGES = (("array_record read", ("array_record",)),
           ("inflate (zlib tensors)", ("(into)", "zlib.decompress")),
           ("tf.Example parse, small fields", ("FromString", "tensorflow_datasets", "example_parser")),
           ("transforms", ("data/transforms.py",)),
           ("collation", ("(_copy_into)", "(add)", "(arrays)", "(stack)")))


def _stage_profile(source, chain) -> dict:
  """CPU ms per clip of a second epoch read in this thread (read_threads=0), by stage, from cProfile's own times of
  each function (a function counts for the first stage whose patterns its location matches; the rest is
  "other": grain, seeding, Python). The profiler adds overhead: compare stages, not the total with the rates."""
  batches = loader.make_loader(source, batch_size=16, seed=0, num_epochs=2, transforms=chain, drop_remainder=True,
                               read_threads=0)
  iterator = iter(batches)
  for _ in range(batches.batches_per_epoch):  # the first epoch fills the per-record caches and the buffers
    next(iterator)
  profile = cProfile.Profile(time.thread_time)  # CPU time of this thread: meaningful on a loaded machine
  profile.enable()
  clips = sum(batch["video"].shape[0] for batch in iterator)
  profile.disable()
  stages = {name: 0.0 for name, _ in _STAGES}
  total = 0.0
  for (filename, line, function), (_, _, own, _, _) in pstats.Stats(profile).stats.items():  # type: ignore
    where = f"{filename}:{line}({function})"
    total += own
    for name, patterns in _STAGES:
      if any(p in where for p in patterns):
        stages[name] += own
        break
  out = {name: round(1000 * t / clips, 3) for name, t in stages.items()}
  out["other"] = round(1000 * (total - sum(stages.values())) / clips, 3)
  out["total"] = round(1000 * total / clips, 3)
  return out


def _shm_blocks() -> set[str]:
  return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _fake_biovid(tmp: str, clips: int):
  """A fake Biovid set of `clips` 10 x 112 x 112 clips (4 subjects x 2 classes x trials) in array_record."""
  trials = max(1, -(-clips // 8))
  part = fakes.write_biovid(pathlib.Path(tmp, "manual"), subjects=("s1_w_20", "s2_m_30", "s3_w_40", "s4_m_50"),
                            trials=trials, layout="frames", num_frames=75, bio_samples=2816)
  for folder in sorted(part.glob("frames/*/*")):  # re-encoded at 112 x 112 (write_biovid writes small frames)
    fakes.write_jpegs(folder, 75, 112, 112)
  start = time.perf_counter()
  bio = biovid.prepare(pathlib.Path(tmp, "bio"), pathlib.Path(tmp, "manual"), "binary", num_frames=10,
                       height=112, width=112)["train"]
  return part, bio, len(bio) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--clips", type=int, default=192, help="fake Biovid clips (the run takes about a minute "
                      "per 100 on a 2-core machine)")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  chain = transforms.video_transforms(train=True, flip=True, normalize=False)  # the trainer's (no crop here)
  host_float_chain = [transforms.RandomFlip(), transforms.Normalize()]  # the former chain
  rates = {}
  results = {"hardware": f"{_cpu_name()}, {os.cpu_count()} cores", "load_average_before": os.getloadavg(),
             "clips_per_s": rates}
  shm_before = _shm_blocks()
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    syn = synthetic.prepare(pathlib.Path(tmp, "syn"), "binary", seed=0)["train"]
    results["synthetic_prepare_s"] = round(time.perf_counter() - start, 2)
    part, bio, prepare_rate = _fake_biovid(tmp, args.clips)
    results["biovid_clips"] = len(bio)
    results["biovid_prepare_clips_per_s"] = round(prepare_rate, 1)
    folders = sorted(part.glob("frames/*/*"))[:16]
    start = time.perf_counter()
    for folder in folders:
      files = sorted(folder.glob("img_*.jpg"))
      np.stack([media.read_image(files[i]) for i in transforms.frame_indices(len(files), 10)])
    results["jpeg_decode_clips_per_s_1core"] = round(len(folders) / (time.perf_counter() - start), 1)
    results["inflate_backend"] = decode.inflater().backend
    results["biovid_cpu_ms_per_clip_by_stage_workers0"] = _stage_profile(bio, chain)
    rates["biovid_10x112x112_host_float32_workers0"] = round(_throughput(bio, 16, 0, host_float_chain,
                                                                         args.epochs), 1)
    rates["biovid_10x112x112_workers0_1thread"] = round(_throughput_1thread(bio, 16, chain, args.epochs), 1)
    for workers in args.workers:
      rates[f"synthetic_8x32x32_workers{workers}"] = round(_throughput(syn, 64, workers, chain, args.epochs), 1)
      rates[f"biovid_10x112x112_workers{workers}"] = round(_throughput(bio, 16, workers, chain, args.epochs), 1)
  results["load_average_after"] = os.getloadavg()
  results["shm_blocks_left"] = len(_shm_blocks() - shm_before)
  base = rates.get("biovid_10x112x112_workers0")
  if base:
    results["biovid_ratio_to_0_workers"] = {f"workers{w}": round(rates[f"biovid_10x112x112_workers{w}"] / base, 2)
                                            for w in args.workers if w}
    results["biovid_ratio_uint8_to_host_float32"] = round(base / rates["biovid_10x112x112_host_float32_workers0"], 2)
    one_core = rates["biovid_10x112x112_workers0_1thread"]
    results["biovid_ratio_to_0_workers_1thread"] = {
        f"workers{w}": round(rates[f"biovid_10x112x112_workers{w}"] / one_core, 2) for w in args.workers}
    results["host_cores_for_1400_clips_per_s"] = round(1400 / one_core, 1)
  text = json.dumps(results, indent=1)
  print(text)
  if args.out:
    pathlib.Path(args.out).write_text(text)


if __name__ == "__main__":
  main()
