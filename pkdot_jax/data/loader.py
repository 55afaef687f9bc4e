"""grain input pipeline: random-access source -> seeded, sharded, transformed NumPy batches.

The order of every epoch is a pure function of (seed, epoch), computed here in NumPy, so it is the same with
0 or N worker processes and on every host; host `shard_index` of `shard_count` then takes every
`shard_count`-th block of `batch_size` examples of that order (the shards partition the epoch, and together
form the global batches a single process would read, row for row), and the trainer assembles the global array
from the per-host batches. All hosts yield the same number of batches: with `drop_remainder` only whole global
batches are kept; otherwise the epoch is padded to whole global batches with copies whose "mask" is False.
Random transforms get a `np.random.Generator` seeded by (seed, batch number, position in the global batch), so
results depend neither on the number of workers nor on the number of hosts.

One iterator serves every epoch (a batch's epoch and slots follow from its index), so worker processes start
once per loader. tfds array_record sources are read through `decode.RecordReader` (libdeflate, small fields
decoded once per record); each example is copied into the preallocated batch as soon as it is transformed.
In-process reading runs on grain's read threads; worker processes (`workers.py`) collate the batch's large
arrays straight into reused slots of shared memory.

Batch format (described in docs/data.md): dict of NumPy arrays with leading axis B; integer fields become int32,
float64 becomes float32, and "mask" (bool) is added. String / bytes fields are dropped unless `keep_strings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import grain
import numpy as np

from pkdot_jax.data import decode, workers

Example = dict[str, Any]
Transform = Callable[[Example, np.random.Generator], Example]


def epoch_order(indices: np.ndarray, *, epoch: int, seed: int, shuffle: bool) -> np.ndarray:
  """The global example order of one epoch (before sharding): a seeded permutation of `indices`."""
  if not shuffle:
    return np.asarray(indices)
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), 0x5EED]))
  return rng.permutation(indices)


def shard_slots(order: np.ndarray, *, batch_size: int, shard_index: int, shard_count: int,
                drop_remainder: bool, pad: bool) -> np.ndarray:
  """Slots of one shard for one epoch: record positions >= 0, padding encoded as -(position + 1).

  The epoch's order is cut into global batches of `batch_size * shard_count`, and shard p takes the p-th
  contiguous block of `batch_size` of each: concatenated in shard order (as `parallel.global_batch` lays out
  the processes' batches), the shards' batches are exactly the global batches of a single process."""
  global_size = batch_size * shard_count
  n = order.size
  if drop_remainder:
    order = order[: (n // global_size) * global_size]
  elif pad:
    total = -(-n // global_size) * global_size
    order = np.concatenate([order.astype(np.int64), np.full(total - n, -(order[0] + 1), dtype=np.int64)])
  positions = np.arange(order.size)
  mine = (positions // batch_size) % shard_count == shard_index  # block p of every global batch
  return order[mine].astype(np.int64)


class _BatchReader:
  """Random-access source of whole batches: element i reads, transforms and collates the i-th batch.

  Working on batches (not examples) keeps worker-to-main-process traffic to one message per batch. Batch i is
  batch `i % batches_per_epoch` of epoch `i // batches_per_epoch`; its slots are computed from
  the index, so one reader (and one set of worker processes) serves any number of epochs. Each example gets its
  own generator seeded by (epoch seed, batch number, position in the global batch), so random transforms are
  reproducible and independent of the worker and host counts. Collation copies each example into the batch as
  soon as it is transformed, into arrays that `read`'s `allocate` may provide (a worker's shared slot).
  """

  def __init__(self, loader: "Loader", length: int):
    self._loader = loader
    self._length = int(length)
    self._per_epoch = loader.batches_per_epoch
    self._transforms = tuple(loader.transforms)
    self._setup()

  def _setup(self) -> None:
    self._records = decode.RecordReader.of(self._loader.source) or self._loader.source
    self._slots_cache: dict[int, np.ndarray] = {}

  def __getstate__(self):
    return {k: v for k, v in self.__dict__.items() if k not in ("_records", "_slots_cache")}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._setup()

  def __len__(self) -> int:
    return self._length

  def _slots(self, i: int) -> tuple[np.ndarray, int, int]:
    """(slots of batch i, its epoch seed, its batch number for the transform seeds)."""
    epoch, b = divmod(i, self._per_epoch)
    slots = self._slots_cache.get(epoch)
    if slots is None:
      slots = self._loader.epoch_slots(epoch)
      self._slots_cache = {epoch: slots}  # one epoch at a time (read threads may replace it concurrently)
    seed, number = self._loader.transform_seed(epoch, b)
    size = self._loader.batch_size
    return slots[b * size:(b + 1) * size], seed, number

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    return self.read(i)

  def read(self, i: int, allocate: workers.Allocate | None = None) -> dict[str, np.ndarray]:
    """Batch i; its arrays are those `allocate(key, shape, dtype)` returns, or new ones where it returns None."""
    slots, seed, number = self._slots(i)
    offset = self._loader.shard_index * self._loader.batch_size  # this shard's first row in the global batch
    batch = _Batch(len(slots), self._loader.keep_strings, allocate)
    for j, slot in enumerate(slots.tolist()):
      position = slot if slot >= 0 else -slot - 1
      example = self._records[position]
      if self._transforms:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0, number, offset + j]))
        for transform in self._transforms:
          example = transform(example, rng)
      batch.add(j, {**example, "mask": slot >= 0})
    return batch.arrays()


class _Batch:
  """Collation into preallocated arrays (the format of `collate`), filled one example at a time."""

  def __init__(self, size: int, keep_strings: bool, allocate: workers.Allocate | None = None):
    self._size, self._keep_strings, self._allocate_with = size, keep_strings, allocate
    self._arrays: dict[str, Any] = {}

  def _allocate(self, key: str, value: np.ndarray) -> Any:
    if value.dtype.kind in "SUO":
      return [] if self._keep_strings else None
    dtype = _batch_dtype(value.dtype)
    shape = (self._size, *value.shape)
    given = self._allocate_with(key, shape, dtype) if self._allocate_with is not None else None
    return np.empty(shape, dtype) if given is None else given

  def add(self, j: int, example: Example) -> None:
    for key, value in example.items():
      value = np.asarray(value)
      if key not in self._arrays:
        self._arrays[key] = self._allocate(key, value)
      target = self._arrays[key]
      if target is None:
        continue
      if isinstance(target, list):
        target.append(value)
        continue
      if value.shape != target.shape[1:]:
        raise ValueError(f"field {key!r}: example {j} of the batch has shape {value.shape}, the first "
                         f"{target.shape[1:]}: a batch needs one shape per field")
      _copy_into(target[j, ...], value)

  def arrays(self) -> dict[str, np.ndarray]:
    return {key: (np.stack(value) if isinstance(value, list) else value) for key, value in self._arrays.items()
            if value is not None}


def _batch_dtype(dtype: np.dtype) -> np.dtype:
  if dtype.kind in "iu" and dtype != np.uint8:
    return np.dtype(np.int32)
  if dtype == np.float64:
    return np.dtype(np.float32)
  return dtype


def _copy_into(target: np.ndarray, value: np.ndarray) -> None:
  """target[...] = value. A strided view whose last axis is contiguous (a flipped or cropped clip: rows of
  3-byte pixels) is copied a whole last-axis row per element, about twice as fast as numpy's byte loop."""
  if (value.ndim and value.dtype == target.dtype and not value.flags.c_contiguous
      and value.strides[-1] == value.itemsize and target.flags.c_contiguous and value.shape[-1] > 1):
    width = f"V{value.shape[-1] * value.itemsize}"
    np.copyto(target.view(width)[..., 0], value.view(width)[..., 0])
    return
  np.copyto(target, value, casting="unsafe")


def collate(examples: Sequence[Example], keep_strings: bool = False) -> dict[str, np.ndarray]:
  """Stacks examples into a batch dict; int -> int32, float64 -> float32, strings dropped unless kept."""
  batch = _Batch(len(examples), keep_strings)
  for j, example in enumerate(examples):
    batch.add(j, example)
  return batch.arrays()


@dataclasses.dataclass
class Loader:
  """Iterable of batches; `len()` is the number of batches it yields (None-epoch loaders have no len)."""
  source: Any
  indices: np.ndarray
  batch_size: int
  shuffle: bool
  seed: int
  num_epochs: int | None
  drop_remainder: bool
  pad: bool
  transforms: tuple[Transform, ...]
  shard_index: int
  shard_count: int
  worker_count: int
  read_threads: int
  keep_strings: bool

  epoch_seeds: bool = False

  def _order_key(self, epoch: int) -> tuple[int, int]:
    """(seed, epoch) that draw epoch `epoch`'s order: (seed, epoch), or with `epoch_seeds` (a seed drawn from
    (seed, epoch), 0)."""
    return (epoch_seed(self.seed, epoch), 0) if self.epoch_seeds else (self.seed, epoch)

  def epoch_slots(self, epoch: int) -> np.ndarray:
    seed, key = self._order_key(epoch)
    order = epoch_order(self.indices, epoch=key, seed=seed, shuffle=self.shuffle)
    return shard_slots(order, batch_size=self.batch_size, shard_index=self.shard_index,
                       shard_count=self.shard_count, drop_remainder=self.drop_remainder, pad=self.pad)

  def transform_seed(self, epoch: int, b: int) -> tuple[int, int]:
    """(seed, batch number) of the random transforms of batch b of epoch `epoch`."""
    if self.epoch_seeds:
      return epoch_seed(self.seed, epoch), b
    return self.seed, epoch * self.batches_per_epoch + b

  @property
  def batches_per_epoch(self) -> int:
    if self.__dict__.get("_per_epoch") is None:
      self.__dict__["_per_epoch"] = -(-self.epoch_slots(0).size // self.batch_size)
    return self.__dict__["_per_epoch"]

  def __len__(self) -> int:
    if self.num_epochs is None:
      raise TypeError("an endless loader (num_epochs=None) has no length")
    return self.batches_per_epoch * self.num_epochs

  def _stop(self) -> int:
    epochs = self.num_epochs if self.num_epochs is not None else _ENDLESS_EPOCHS
    return epochs * self.batches_per_epoch

  def _in_process(self, reader: "_BatchReader", start: int) -> grain.IterDataset:
    """The reader's batches from global batch `start` on, read by grain's threads in this process."""
    threads = self.read_threads
    return grain.MapDataset.source(reader)[start:].to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(2, threads) if threads else 0))

  def iterate(self, start: int = 0) -> Generator[dict[str, np.ndarray], None, None]:
    """The batches from global batch `start` (epoch start // batches_per_epoch) on; worker processes start once
    and serve every epoch, and stop when the iteration ends or is abandoned."""
    if start < 0 or (self.num_epochs is not None and start > len(self)):
      raise ValueError(f"start={start} is outside the loader's {len(self)} batches")
    stop = self._stop()
    reader = _BatchReader(self, stop)
    if self.worker_count > 0:
      return workers.batches(reader, start, stop, self.worker_count, self.batch_size, self.read_threads)
    return _closing(self._in_process(reader, start))

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self.iterate(0)


_ENDLESS_EPOCHS = 1 << 30  # an endless loader's dataset: long enough never to end, and indexed lazily


def epoch_seed(seed: int, epoch: int) -> int:
  """A seed for epoch `epoch` drawn from (seed, epoch) (the trainer reseeds every epoch this way)."""
  return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _closing(dataset: grain.IterDataset) -> Generator[dict[str, np.ndarray], None, None]:
  """Iterates a grain dataset and closes its iterator however the iteration ends (exhausted, abandoned by the
  caller, an error), so its read threads stop."""
  iterator = iter(dataset)
  try:
    yield from iterator
  finally:
    close = getattr(iterator, "close", None)
    if close is not None:
      close()


def make_loader(source, indices: Sequence[int] | np.ndarray | None = None, *, batch_size: int,
                shuffle: bool = True, seed: int = 0, num_epochs: int | None = 1, drop_remainder: bool = False,
                pad: bool = True, transforms: Sequence[Transform] = (), shard_index: int = 0,
                shard_count: int = 1, worker_count: int = 0, read_threads: int = 2,
                keep_strings: bool = False, epoch_seeds: bool = False) -> Loader:
  """Batches of `source[indices]` (a tfds data source or any random-access sequence of example dicts).

  Args:
    source: random-access source; `source[i]` is a dict of arrays / scalars.
    indices: record positions to use (e.g. a fold's train indices); default all.
    batch_size: per-process batch size B.
    shuffle: seeded reshuffle every epoch (order depends only on seed and epoch).
    seed: shuffling and random-transform seed.
    num_epochs: number of passes; None = endless.
    drop_remainder: drop the incomplete last batch of each epoch (all hosts drop alike).
    pad: (when not dropping) pad the last batch to B with mask=False copies; False -> a smaller last batch.
    transforms: callables `(example, rng) -> example`, applied in order (see pkdot_jax.data.transforms).
    shard_index, shard_count: this process's shard; shards partition each epoch's examples.
    worker_count: worker processes (0 = read in this process); each reads whole batches on its read threads.
    read_threads: read threads of the in-process reader (worker_count=0, grain's) or of each worker process.
    keep_strings: keep string/bytes fields (e.g. sample names) as object arrays instead of dropping them.
    epoch_seeds: epoch e draws its order and transforms from `epoch_seed(seed, e)` (the trainer's seeding)
      instead of from (seed, e).
  """
  indices = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
  if indices.ndim != 1 or indices.size == 0:
    raise ValueError(f"indices must be a non-empty 1-D array, got shape {indices.shape}")
  if indices.min() < 0 or indices.max() >= len(source):
    raise ValueError(f"indices must lie in [0, {len(source)}), got range [{indices.min()}, {indices.max()}]")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if worker_count < 0 or read_threads < 0:
    raise ValueError(f"worker_count and read_threads must be >= 0, got worker_count={worker_count}, "
                     f"read_threads={read_threads}")
  if shard_count < 1 or not 0 <= shard_index < shard_count:
    raise ValueError(f"need 0 <= shard_index < shard_count, got shard_index={shard_index}, "
                     f"shard_count={shard_count}")
  if num_epochs is not None and num_epochs < 1:
    raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
  if drop_remainder and indices.size < batch_size * shard_count:
    raise ValueError(f"drop_remainder with {indices.size} examples over {shard_count} shard(s) leaves no full "
                     f"batch of batch_size={batch_size}")
  return Loader(source=source, indices=indices, batch_size=batch_size, shuffle=shuffle, seed=seed,
                num_epochs=num_epochs, drop_remainder=drop_remainder, pad=pad, transforms=tuple(transforms),
                shard_index=shard_index, shard_count=shard_count, worker_count=worker_count,
                read_threads=read_threads, keep_strings=keep_strings, epoch_seeds=epoch_seeds)
