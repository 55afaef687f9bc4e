"""One training epoch of the loader on a prepared BioVid set at the paper's shapes, as the trainer reads it.

Builds the data the way `pkdot train --config=biovid_5class` does (`pkdot_jax.train.input.load`: fold 0 of the
subject-disjoint folds, TSN frame sampling + flip of the 10 stored 112 x 112 frames, 5.5 s of physio) and
iterates the training batches of epoch 0 (batch 128 as in the paper, the config's worker count unless
--workers), without a model. The set must already be prepared under --data_dir (else this prepares it). Prints
one JSON object: clips/s over the epoch (first batch excluded), batches, shapes, peak RSS of this process. Run:

  python -m experiments.rehearsal.epoch --manual_dir=/tmp/rehearsal/manual --data_dir=/tmp/rehearsal/data
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from pkdot_jax import configs
from pkdot_jax.train import input as input_lib


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--manual_dir", required=True)
  parser.add_argument("--data_dir", required=True)
  parser.add_argument("--config", default="biovid_5class")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--workers", type=int, default=None, help="grain worker processes (default: the config's)")
  args = parser.parse_args(argv)
  config = configs.load(configs.resolve(args.config))
  config.data.manual_dir, config.data.data_dir = args.manual_dir, args.data_dir
  if args.workers is not None:
    config.data.worker_count = args.workers
  data = input_lib.load(config)
  batches = data.train_batches(epoch=0, seeds=(0,), batch_size=args.batch_size)
  first = next(batches)
  start, clips, count = time.perf_counter(), 0, 1
  for batch in batches:
    clips += batch["video"].shape[0]
    count += 1
  seconds = time.perf_counter() - start
  print(json.dumps({
      "config": args.config, "train_clips": len(data.train), "batches": count, "batch_size": args.batch_size,
      "workers": config.data.worker_count, "video": list(first["video"].shape),
      "video_dtype": str(first["video"].dtype),
      "physio": list(first["physio"].shape), "clips_per_s": round(clips / seconds, 1), "epoch_s": round(seconds, 1),
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
  main()
