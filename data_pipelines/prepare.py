"""Builds a dataset's array_record files once, before training (the trainer would otherwise do it on first use).

  python -m data_pipelines.prepare --dataset=biovid --manual_dir=/data/biovid --data_dir=~/tensorflow_datasets \
      [--config_name=binary] [--override=num_frames=10 --override=skip_bad=true]
  python -m data_pipelines.prepare --dataset=pkdot_synthetic --config_name=binary --override=num_subjects=48

Prints the examples per split. The builders, and what each accepts: `pkdot_jax.data` (docs/data.md).
"""

from __future__ import annotations

import argparse
import ast
import json

from pkdot_jax import data


def _parse_override(text: str) -> tuple[str, object]:
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise argparse.ArgumentTypeError(f"--override must look like field=value, got {text!r}")
  lowered = value.lower()
  if lowered in ("true", "false"):
    return key, lowered == "true"
  try:
    return key, ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key, value


def main(argv: list[str] | None = None) -> dict[str, int]:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", required=True, choices=data.DATASETS)
  parser.add_argument("--data_dir", default="~/tensorflow_datasets")
  parser.add_argument("--manual_dir", default="")
  parser.add_argument("--config_name", default="binary")
  parser.add_argument("--seed", type=int, default=0, help="pkdot_synthetic: generation seed")
  parser.add_argument("--override", type=_parse_override, action="append", default=[],
                      help="a builder-config field, field=value (repeatable)")
  args = parser.parse_args(argv)
  sources = data.prepare(args.dataset, args.data_dir, config_name=args.config_name, manual_dir=args.manual_dir,
                         seed=args.seed, **dict(args.override))
  sizes = {split: len(source) for split, source in sources.items()}
  print(json.dumps(sizes))
  return sizes


if __name__ == "__main__":
  main()
