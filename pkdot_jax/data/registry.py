"""Datasets by name (`config.data.name`): what each is and how it is built, without importing its builder.

An entry names the package that holds the dataset's `prepare` function, `make_config` and tfds builder class;
that package (and tensorflow_datasets with it) is imported only when the dataset is built or checked, so
validating a config stays light. The entries are registered in `pkdot_jax/data/__init__.py`.

A package's `prepare` is called as
  generated sets:    prepare(data_dir, config_name, seed, **overrides)
  manual downloads:  prepare(data_dir, manual_dir, config_name, **overrides)
and returns {split name: random-access data source}.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import types
from typing import Any

from pkdot_jax import errors

__all__ = ["DatasetSpec", "available", "dataset", "register"]


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A registered dataset.

  Attributes:
    name: `config.data.name`; also the tfds builder's name (its files go to <data_dir>/<name>/).
    module: import path of the package with `prepare`, `make_config` and the builder class.
    builder: the tfds builder class's name in `module` (manual downloads: it carries
      `MANUAL_DOWNLOAD_INSTRUCTIONS`).
    manual_download: True when the files are downloaded by hand and extracted into `config.data.manual_dir`;
      False for a set generated from `config.data.dataset_seed`.
    official_split: the split that holds the dataset's official validation set (the test set of the "official"
      protocol), or None when the dataset has no official split.
  """

  name: str
  module: str
  builder: str
  manual_download: bool
  official_split: str | None = None

  def load(self) -> types.ModuleType:
    """The dataset's package (imports its builder and tensorflow_datasets)."""
    return importlib.import_module(self.module)

  def builder_class(self) -> Any:
    return getattr(self.load(), self.builder)

  def prepare(self, data_dir: str, *, config_name: str, manual_dir: str = "", seed: int = 0,
              **overrides) -> dict[str, Any]:
    """{split: data source}, built under `data_dir` on first use (no lock: see `pkdot_jax.data.prepare`)."""
    if self.manual_download:
      if not manual_dir:
        raise errors.ConfigError(self.missing_manual_dir())
      return self.load().prepare(data_dir, os.path.expanduser(manual_dir), config_name, **overrides)
    return self.load().prepare(data_dir, config_name, seed, **overrides)

  def missing_manual_dir(self) -> str:
    """The message for this manual download without `manual_dir`: the field to set and where the files come
    from (the builder's download instructions)."""
    return (f"dataset {self.name!r} is a manual download: set --config.data.manual_dir=/path/to/it (the folder "
            f"the files were extracted into).{self.builder_class().MANUAL_DOWNLOAD_INSTRUCTIONS}")


_DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
  """Adds `spec` under its name; a name registered twice is a ValueError."""
  if spec.name in _DATASETS:
    raise ValueError(f"dataset {spec.name!r} is registered twice ({_DATASETS[spec.name].module} and {spec.module})")
  _DATASETS[spec.name] = spec
  return spec


def available() -> list[str]:
  """The registered dataset names, in registration order."""
  return list(_DATASETS)


def dataset(name: str) -> DatasetSpec:
  """The dataset registered under `name`; ValueError naming the registered ones otherwise."""
  if not isinstance(name, str) or name not in _DATASETS:
    raise errors.ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(_DATASETS)}")
  return _DATASETS[name]
