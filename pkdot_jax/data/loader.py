"""grain input pipeline: random-access source -> seeded, sharded, transformed NumPy batches.

The order of every epoch is a pure function of (seed, epoch), computed here in NumPy, so it is the same with
0 or N worker processes and on every host; host `shard_index` of `shard_count` then takes every
`shard_count`-th block of `batch_size` examples of that order (the shards partition the epoch, and together
form the global batches a single process would read, row for row), and the trainer assembles the global array
from the per-host batches. All hosts yield the same number of batches: with `drop_remainder` only whole global
batches are kept; otherwise the epoch is padded to whole global batches with copies whose "mask" is False.
Random transforms get a `np.random.Generator` seeded by (seed, batch number, position in the global batch), so
results depend neither on the number of workers nor on the number of hosts.

Batch format (described in docs/data.md): dict of NumPy arrays with leading axis B; integer fields become int32,
float64 becomes float32, and "mask" (bool) is added. String / bytes fields are dropped unless `keep_strings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grain
from absl import flags
import numpy as np

Example = dict[str, Any]
_NO_SHARED_MEMORY = 1 << 62  # grain's min_shm_size: arrays smaller than this are pickled, i.e. all of them
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
  """Random-access source of whole batches: element i reads, transforms and collates the i-th slot group.

  Working on batches (not examples) keeps worker-to-main-process traffic to one message per batch. Each example
  gets its own generator seeded by (seed, batch number, position in the global batch), so random transforms
  are reproducible and independent of the worker and host counts.
  """

  def __init__(self, source, batches: list[np.ndarray], transforms: Sequence[Transform], seed: int,
               offset: int, first_batch: int, keep_strings: bool):
    self._source = source
    self._batches = batches
    self._transforms = tuple(transforms)
    self._seed = int(seed)
    self._offset = int(offset)  # position of this shard's first row in the global batch
    self._first_batch = int(first_batch)
    self._keep_strings = keep_strings

  def __len__(self) -> int:
    return len(self._batches)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    examples = []
    for j, slot in enumerate(self._batches[i].tolist()):
      position = slot if slot >= 0 else -slot - 1
      example = dict(self._source[position])
      if self._transforms:
        rng = np.random.default_rng(
            np.random.SeedSequence([self._seed, 0, self._first_batch + i, self._offset + j]))
        for transform in self._transforms:
          example = transform(example, rng)
      example["mask"] = slot >= 0
      examples.append(example)
    return collate(examples, self._keep_strings)


def collate(examples: Sequence[Example], keep_strings: bool = False) -> dict[str, np.ndarray]:
  """Stacks examples into a batch dict; int -> int32, float64 -> float32, strings dropped unless kept."""
  batch = {}
  for key in examples[0]:
    values = np.stack([np.asarray(e[key]) for e in examples])
    kind = values.dtype.kind
    if kind in "SUO":
      if keep_strings:
        batch[key] = values
      continue
    if kind in "iu" and values.dtype != np.uint8:
      values = values.astype(np.int32)
    elif kind == "f" and values.dtype == np.float64:
      values = values.astype(np.float32)
    batch[key] = values
  return batch


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

  def epoch_slots(self, epoch: int) -> np.ndarray:
    order = epoch_order(self.indices, epoch=epoch, seed=self.seed, shuffle=self.shuffle)
    return shard_slots(order, batch_size=self.batch_size, shard_index=self.shard_index,
                       shard_count=self.shard_count, drop_remainder=self.drop_remainder, pad=self.pad)

  @property
  def batches_per_epoch(self) -> int:
    m = self.epoch_slots(0).size
    return -(-m // self.batch_size)

  def __len__(self) -> int:
    if self.num_epochs is None:
      raise TypeError("an endless loader (num_epochs=None) has no length")
    return self.batches_per_epoch * self.num_epochs

  def _dataset(self, epochs: range) -> grain.IterDataset:
    batches = []
    for epoch in epochs:
      slots = self.epoch_slots(epoch)
      # Batches never straddle two epochs (a ragged last batch stays ragged when pad=False).
      batches.extend(slots[k:k + self.batch_size] for k in range(0, slots.size, self.batch_size))
    reader = _BatchReader(self.source, batches, self.transforms, self.seed, self.shard_index * self.batch_size,
                          first_batch=epochs.start * self.batches_per_epoch, keep_strings=self.keep_strings)
    iter_dataset = grain.MapDataset.source(reader).to_iter_dataset(
        grain.ReadOptions(num_threads=self.read_threads, prefetch_buffer_size=max(2, self.read_threads)))
    if self.worker_count > 0:
      # grain's worker processes read absl flags; outside an absl app nothing has parsed them, so accept the
      # defaults (a real absl app has parsed them already and this is a no-op).
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      # Batches travel pickled through the workers' queues, not through shared memory: on Python < 3.13 the
      # resource tracker counts every block a worker creates and the main process opens twice, and warns of
      # "leaked" blocks at exit; a uint8 batch pickles in milliseconds against the ~100 ms it takes to read.
      iter_dataset = grain.experimental.WithOptionsIterDataset(
          iter_dataset, grain.experimental.DatasetOptions(min_shm_size=_NO_SHARED_MEMORY))
      iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.worker_count,
                                                                           per_worker_buffer_size=2))
    return iter_dataset

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    if self.num_epochs is not None:
      yield from _closing(self._dataset(range(self.num_epochs)))
      return
    epoch = 0
    while True:
      yield from _closing(self._dataset(range(epoch, epoch + 1)))
      epoch += 1


def _closing(dataset: grain.IterDataset) -> Iterator[dict[str, np.ndarray]]:
  """Iterates a grain dataset and closes its iterator however the iteration ends (exhausted, abandoned by the
  caller, an error): worker processes stop and the shared-memory blocks of prefetched batches are unlinked,
  instead of leaking until the interpreter exits."""
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
                keep_strings: bool = False) -> Loader:
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
    worker_count: grain worker processes (0 = in-process).
    read_threads: grain read threads per process.
    keep_strings: keep string/bytes fields (e.g. sample names) as object arrays instead of dropping them.
  """
  indices = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
  if indices.ndim != 1 or indices.size == 0:
    raise ValueError(f"indices must be a non-empty 1-D array, got shape {indices.shape}")
  if indices.min() < 0 or indices.max() >= len(source):
    raise ValueError(f"indices must lie in [0, {len(source)}), got range [{indices.min()}, {indices.max()}]")
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
                read_threads=read_threads, keep_strings=keep_strings)
