"""Datasets: tfds builders that write array_record (`synthetic/`, `biovid/`, `affwild2/`), read through
`tfds.data_source` and grain without TensorFlow; folds, loader, host transforms, media decoding.

`prepare(name, data_dir, ...)` builds a registered dataset once (or reuses it) and returns its data sources by
split; `dataset(name)` is its registry entry (`registry.DatasetSpec`), `available()` the registered names.
Batch format and the formats of the stored records: docs/data.md.
"""

from __future__ import annotations

import os
from typing import Any

from pkdot_jax import errors
from pkdot_jax.data.registry import DatasetSpec, available, dataset, register

__all__ = ["DatasetSpec", "available", "dataset", "missing_manual_dir", "prepare", "register"]

register(DatasetSpec("pkdot_synthetic", module="pkdot_jax.data.synthetic", builder="PkdotSynthetic",
                     manual_download=False))
register(DatasetSpec("biovid", module="pkdot_jax.data.biovid", builder="Biovid", manual_download=True))
register(DatasetSpec("affwild2", module="pkdot_jax.data.affwild2", builder="Affwild2", manual_download=True,
                     official_split="validation"))


def prepare(name: str, data_dir: str, *, config_name: str, manual_dir: str = "", seed: int = 0,
            **overrides) -> dict[str, Any]:
  """{split: random-access data source} of dataset `name` under `data_dir`, built on first use.

  `manual_dir`: the extracted download (manual-download datasets); `seed`: a generated set's generation seed;
  `overrides`: builder-config fields (see each builder's `make_config`).
  """
  data_dir = os.path.expanduser(data_dir)
  spec = dataset(name)
  if spec.manual_download and not manual_dir:
    raise errors.ConfigError(spec.missing_manual_dir())
  from pkdot_jax.train import locks
  # Processes building into one data dir (sweep shards, the tasks of a job) take turns: the first builds, the
  # others wait, then find it built and read it (tfds renames a finished build into place, two at once clash).
  with locks.claim(data_dir, f"the {name} build in data dir", wait=True, name=f".pkdot-build-{name}.lock",
                   read_only_ok=True):
    return spec.prepare(data_dir, config_name=config_name, manual_dir=manual_dir, seed=seed, **overrides)


def missing_manual_dir(name: str) -> str:
  """The message for a manual-download dataset without `manual_dir`: the field to set and where the files
  come from (the builder's download instructions)."""
  return dataset(name).missing_manual_dir()
