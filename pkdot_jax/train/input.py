"""From `config.data` to the batches a stage consumes: dataset, fold, loaders, transforms.

Each split (train / val / test) is a random-access tfds data source plus the example indices of the fold. The
training order of an epoch is a function of (member seed, epoch) only, so a resumed run sees the same batches;
evaluation batches are padded to a full batch with `mask = False` so every test example is scored exactly once.
In a multi-process job every process reads its own shard of each batch (`parallel.process_shard`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import weakref
from typing import Any, Iterator

import numpy as np

from pkdot_jax import errors
from pkdot_jax import data as data_lib
from pkdot_jax.data import folds as folds_lib
from pkdot_jax.data import io as io_lib
from pkdot_jax.data import loader as loader_lib
from pkdot_jax.data import transforms as transforms_lib
from pkdot_jax.train import parallel


@dataclasses.dataclass
class Split:
  source: Any
  indices: np.ndarray

  def __len__(self) -> int:
    return len(self.indices)


@dataclasses.dataclass
class Data:
  """The splits of a run and their loaders. Each (split, seed, batch size) reads through one endless loader kept
  across calls, so worker processes start once per run instead of at every epoch and evaluation; `close()` (or
  garbage collection, or the interpreter's exit) stops them."""
  train: Split
  val: Split
  test: Split
  train_transforms: list
  eval_transforms: list
  worker_count: int = 0
  _streams: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

  def __post_init__(self):
    weakref.finalize(self, _close_streams, self._streams)

  def close(self) -> None:
    """Stops the loaders' worker processes (a later call starts new ones)."""
    _close_streams(self._streams)

  def _loader(self, split: Split, batch_size: int, *, shuffle: bool, seed: int, drop_remainder: bool,
              transforms, worker_count: int | None = None) -> loader_lib.Loader:
    shard_index, shard_count = parallel.process_shard()
    if batch_size % shard_count:
      raise errors.ConfigError(f"batch size {batch_size} is not divisible by the {shard_count} processes")
    return loader_lib.make_loader(
        split.source, split.indices, batch_size=batch_size // shard_count, shuffle=shuffle, seed=seed,
        num_epochs=None, drop_remainder=drop_remainder, transforms=transforms, shard_index=shard_index,
        shard_count=shard_count, worker_count=self.worker_count if worker_count is None else worker_count,
        epoch_seeds=True)

  def _epoch(self, key: tuple, make, epoch: int | None, skip: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of the stream `key` (made by `make()` when missing or elsewhere): epoch `epoch` from batch
    `skip` on, or (epoch None) the epoch at which the stream stands."""
    stream = self._streams.get(key)
    per_epoch = stream.loader.batches_per_epoch if stream else make().batches_per_epoch
    if epoch is None:
      epoch = stream.position // per_epoch if stream and stream.position % per_epoch == 0 else 0
    start = epoch * per_epoch + skip
    if stream is None or stream.position != start:
      if stream is not None:
        stream.close()
      stream = self._streams[key] = _Stream(make(), start)
    return stream.take(per_epoch - skip)

  def train_batches(self, epoch: int, seeds: tuple[int, ...], batch_size: int, skip: int = 0
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Full training batches of one epoch; with several member seeds, batches stacked to (M, B, ...). Epoch e's
    order and draws come from a seed drawn from (member seed, e), so a resumed run sees the same batches."""
    split = self.train
    unique = list(dict.fromkeys(seeds))  # members of one seed (several weights) read one stream
    iterators = [self._epoch(("train", seed, batch_size), functools.partial(
        self._loader, split, batch_size, shuffle=True, seed=seed, drop_remainder=True,
        transforms=self.train_transforms), epoch, skip) for seed in unique]
    if len(seeds) == 1:
      yield from iterators[0]
      return
    for batches in zip(*iterators):
      by_seed = dict(zip(unique, batches))
      members = [by_seed[seed] for seed in seeds]
      yield {k: np.stack([b[k] for b in members]) for k in members[0] if np.asarray(members[0][k]).dtype.kind
             not in "OUS"}

  def eval_batches(self, split_name: str, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    split = getattr(self, split_name)
    return self._epoch(("eval", split_name, batch_size), functools.partial(
        self._loader, split, batch_size, shuffle=False, seed=0, drop_remainder=False,
        transforms=self.eval_transforms), None)

  def example_batch(self, batch_size: int) -> dict[str, np.ndarray]:
    """One evaluation-transformed batch (for shapes at model initialisation), read in this process."""
    loader = self._loader(self.train, batch_size, shuffle=False, seed=0, drop_remainder=False,
                          transforms=self.eval_transforms, worker_count=0)
    iterator = loader.iterate(0)
    try:
      return next(iterator)
    finally:
      iterator.close()


class _Stream:
  """An iterator over a loader's batches that knows the global batch it stands at."""

  def __init__(self, loader: loader_lib.Loader, start: int):
    self.loader, self.position = loader, start
    self._iterator = loader.iterate(start)

  def take(self, count: int) -> Iterator[dict[str, np.ndarray]]:
    for _ in range(count):
      batch = next(self._iterator, None)
      if batch is None:
        return
      self.position += 1
      yield batch

  def close(self) -> None:
    self._iterator.close()


def _close_streams(streams: dict) -> None:
  for stream in streams.values():
    stream.close()
  streams.clear()


def _transforms(dcfg) -> tuple[list, list]:
  """Video chains for training and evaluation. Without `augment` both are deterministic and identical (the
  teacher cache relies on it); with it, training samples TSN frames, crops randomly and flips. Clips stay uint8:
  the models normalise them on the device (`pkdot_jax.data.on_device`)."""
  def chain(train: bool) -> list:
    return transforms_lib.video_transforms(
        train=train, num_frames=dcfg.get("num_frames") or None, size=tuple(dcfg.size) if dcfg.get("size") else None,
        crop=tuple(dcfg.crop) if dcfg.get("crop") else None, flip=True, normalize=False)
  return chain(bool(dcfg.augment)), chain(False)


def _check_sampling_rates(source, config) -> None:
  """The model's on-device spectrogram front-ends must use the rates the dataset was stored at (the authors'
  code assumed 1000 Hz for 512 Hz Biovid signals): refuse a mismatch instead of training on wrong spectra."""
  metadata = getattr(getattr(source, "dataset_info", None), "metadata", None) or {}
  mcfg = config.model
  checks = (("physio_fs", "physio", "model.spectrogram.fs", mcfg.spectrogram.fs),
            ("audio_fs", "audio", "model.logmel.fs", mcfg.logmel.fs))
  for key, modality, field, model_fs in checks:
    if key in metadata and mcfg.privileged == modality and mcfg.privileged_backbone == "resnet2d18" \
        and float(metadata[key]) != float(model_fs):
      raise errors.ConfigError(f"dataset {config.data.name!r} stores {modality} at {metadata[key]} Hz but {field} is "
                               f"{model_fs}; set --config.{field}={metadata[key]}")


def _sources(dcfg, data_dir: str, datasets: dict[str, Any] | None) -> dict[str, Any]:
  """The dataset's data sources by split name. With `config.data.in_memory`, records are decoded once and kept
  in `datasets` (the caller's in-memory cache, `programs.Context.datasets`; small datasets: the synthetic
  demo)."""
  if not dcfg.get("in_memory", False):
    return _disk_sources(dcfg, data_dir)
  datasets = {} if datasets is None else datasets
  key = json.dumps([data_dir, _record_fields(dcfg)], sort_keys=True, default=str)
  if key not in datasets:
    datasets[key] = {split: io_lib.InMemorySource(source) for split, source in _disk_sources(dcfg, data_dir).items()}
  return datasets[key]


def _record_fields(dcfg) -> dict[str, Any]:
  """The fields of `config.data` that name the stored records (not the fold or the loader settings)."""
  keep = ("name", "config_name", "data_dir", "manual_dir", "dataset_seed", "overrides")
  tree = json.loads(dcfg.to_json_best_effort())
  return {k: tree.get(k) for k in keep}


def _disk_sources(dcfg, data_dir: str) -> dict[str, Any]:
  """The dataset's data sources by split name; `config.data.overrides` are builder-config fields."""
  return data_lib.prepare(dcfg.name, data_dir, config_name=dcfg.config_name, manual_dir=dcfg.get("manual_dir", ""),
                          seed=dcfg.dataset_seed, **dict(dcfg.get("overrides", {})))


def _labels(source, indices=None) -> np.ndarray:
  """Class ids of a source's records (decodes each record: used only for the authors' stratified folds)."""
  indices = range(len(source)) if indices is None else indices
  return np.asarray([int(source[int(i)]["label"]) for i in indices], np.int64)


def _holdout_subjects(subjects: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, val) example indices: round(val_fraction x #subjects) whole subjects (at least one, and at least one
  left for training) held out for validation."""
  unique = np.unique(subjects)
  if val_fraction <= 0:
    return np.arange(subjects.size), np.zeros(0, np.int64)
  if unique.size < 2:
    raise errors.ConfigError(f"config.data.val_fraction={val_fraction} needs at least 2 training subjects/videos to "
                             f"hold some out for validation, got {unique.size}")
  num_val = min(max(1, int(round(val_fraction * unique.size))), unique.size - 1)
  val_subjects = np.random.default_rng(seed).permutation(unique)[:num_val]
  in_val = np.isin(subjects, val_subjects)
  return np.flatnonzero(~in_val), np.flatnonzero(in_val)


PROTOCOLS = ("subject", "authors", "official")


def check_data_config(config) -> None:
  """The checks of `config.data` that need no data, from the dataset registry: dataset name, manual download,
  protocol (an official split for "official"), fold."""
  dcfg = config.data
  if dcfg.name not in data_lib.available():
    raise errors.ConfigError(f"config.data.name={dcfg.name!r} is not a dataset; datasets are "
                             f"{', '.join(data_lib.available())}")
  spec = data_lib.dataset(dcfg.name)
  if spec.manual_download and not dcfg.get("manual_dir", ""):
    raise errors.ConfigError(spec.missing_manual_dir())
  if dcfg.protocol not in PROTOCOLS:
    raise errors.ConfigError(f"config.data.protocol must be one of {', '.join(PROTOCOLS)}, got {dcfg.protocol!r}")
  if dcfg.protocol == "official" and spec.official_split is None:
    raise errors.ConfigError(_no_official_split(dcfg.name))
  if dcfg.protocol != "official" and not 0 <= dcfg.fold < dcfg.num_folds:
    raise errors.ConfigError(f"config.data.fold={dcfg.fold} is outside the {dcfg.num_folds} folds "
                             f"(config.data.num_folds)")


def _no_official_split(name: str) -> str:
  with_split = [n for n in data_lib.available() if data_lib.dataset(n).official_split is not None]
  return (f"config.data.protocol='official' needs a dataset with an official validation split "
          f"({', '.join(with_split)}); config.data.name is {name!r}")


def load(config, datasets: dict[str, Any] | None = None) -> Data:
  """Dataset, fold and transforms named by `config.data`.

  Protocols (`config.data.protocol`):
    "subject"   k subject-disjoint folds, validation subjects drawn from each fold's training subjects;
    "authors"   the authors' clip-level folds (stratified by class when the records carry a "label"); clips of
                one subject land in train and test alike (identity leakage), kept only to reproduce their numbers;
    "official"  a dataset's official train / validation split (Aff-Wild2): the official validation set is the
                test set, and model-selection videos (`val_fraction` of them, seeded by `fold_seed`) are held
                out of the official training set.
  `datasets`: the caller's cache of in-memory sources (`config.data.in_memory`).
  `config.data.select_on_test=True` reproduces the other half of the authors' evaluation: no validation split
  (its examples go back into training) and the best epoch is picked on the test examples. Never on by default.
  """
  check_data_config(config)
  dcfg = config.data
  data_dir = os.path.expanduser(dcfg.data_dir)
  sources = _sources(dcfg, data_dir, datasets)

  if dcfg.protocol == "official":
    official = data_lib.dataset(dcfg.name).official_split
    if official not in sources:
      raise errors.ConfigError(f"{_no_official_split(dcfg.name)}; {dcfg.name!r} has splits {sorted(sources)}")
    train_source, test_source = sources["train"], sources[official]
    # Aff-Wild2 has no subject ids: the builder's "subject" is the video (so held-out videos are disjoint).
    subjects = io_lib.example_subjects(train_source, "train")
    train_idx, val_idx = _holdout_subjects(subjects, float(dcfg.val_fraction), int(dcfg.fold_seed))
    test = Split(test_source, np.arange(len(test_source)))
  else:
    train_source = sources["train"]
    subjects = io_lib.example_subjects(train_source, "train")
    if dcfg.protocol == "subject":
      folds = folds_lib.subject_folds(subjects, dcfg.num_folds, dcfg.val_fraction, dcfg.fold_seed)
    else:  # "authors" (check_data_config admits nothing else)
      has_labels = "label" in getattr(getattr(train_source, "dataset_info", None), "features", {})
      folds = folds_lib.authors_clip_folds(len(subjects), dcfg.num_folds, dcfg.val_fraction, dcfg.fold_seed,
                                           labels=_labels(train_source) if has_labels else None)
    train_idx, val_idx, test_idx = folds[dcfg.fold]
    test = Split(train_source, test_idx)
  val = Split(train_source, val_idx)
  if dcfg.get("select_on_test", False):
    train_idx = np.sort(np.concatenate([train_idx, val_idx]))
    val = test
  _check_sampling_rates(train_source, config)
  train_tf, eval_tf = _transforms(dcfg)
  return Data(train=Split(train_source, train_idx), val=val, test=test,
              train_transforms=train_tf, eval_transforms=eval_tf, worker_count=dcfg.get("worker_count", 0))
