"""Datasets: tfds builders that write array_record (`synthetic/`, `biovid/`, `affwild2/`), read through
`tfds.data_source` and grain without TensorFlow; folds, loader, host transforms, media decoding.

`prepare(name, data_dir, ...)` builds a dataset once (or reuses it) and returns its data sources by split.
Batch format and the formats of the stored records: docs/data.md.
"""

from __future__ import annotations

import os
from typing import Any

from pkdot_jax import errors

DATASETS = ("pkdot_synthetic", "biovid", "affwild2")


def prepare(name: str, data_dir: str, *, config_name: str, manual_dir: str = "", seed: int = 0,
            **overrides) -> dict[str, Any]:
  """{split: random-access data source} of dataset `name` under `data_dir`, built on first use.

  `manual_dir`: the extracted download (biovid, affwild2); `seed`: the synthetic set's generation seed;
  `overrides`: builder-config fields (see each builder's `make_config`).
  """
  data_dir = os.path.expanduser(data_dir)
  if name not in DATASETS:
    raise errors.ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
  if name != "pkdot_synthetic" and not manual_dir:
    raise errors.ConfigError(missing_manual_dir(name))
  from pkdot_jax.train import locks
  # Processes building into one data dir (sweep shards, the tasks of a job) take turns: the first builds, the
  # others wait, then find it built and read it (tfds renames a finished build into place, two at once clash).
  with locks.claim(data_dir, f"the {name} build in data dir", wait=True, name=f".pkdot-build-{name}.lock",
                   read_only_ok=True):
    if name == "pkdot_synthetic":
      from pkdot_jax.data import synthetic
      return synthetic.prepare(data_dir, config_name, seed, **overrides)
    module = _manual_module(name)
    return module.prepare(data_dir, os.path.expanduser(manual_dir), config_name, **overrides)


def _manual_module(name: str):
  if name == "biovid":
    from pkdot_jax.data import biovid
    return biovid
  from pkdot_jax.data import affwild2
  return affwild2


def missing_manual_dir(name: str) -> str:
  """The message for a manual-download dataset without `manual_dir`: the field to set and where the files
  come from (the builder's download instructions)."""
  module = _manual_module(name)
  builder = module.Biovid if name == "biovid" else module.Affwild2
  return (f"dataset {name!r} is a manual download: set --config.data.manual_dir=/path/to/it (the folder the "
          f"files were extracted into).{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
