"""The loader's worker processes: N spawned processes read whole batches into rings of shared memory.

Worker w of N reads batches first + w, first + w + N, ... with the loader's own batch reader, so its batches are
those of the in-process reader; like the in-process reader, it reads on several threads (the inflation of the
stored tensors runs outside the GIL), so N workers use up to N x threads cores. The large arrays of a batch
(clips, signals) are collated straight into one of the worker's `depth` slots of shared memory; the small ones
(labels, mask) go pickled through the worker's pipe with the slot's number. The main process takes the workers'
batches in turn (the in-process order), copies the large arrays out of the slot and frees it; a semaphore per
worker bounds how far it reads ahead. Nothing is pickled or allocated per batch but the small arrays, and the
slots are reused for the whole run.

The slots come from multiprocessing's heap: an unlinked file that the processes map when they start, so nothing
is ever left in /dev/shm, however the processes end. A worker exits when its parent has gone; closing the
iterator stops the workers.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import multiprocessing
import os
import pickle
import signal
import traceback
from collections.abc import Callable, Generator
from typing import Any, NoReturn, Protocol

import numpy as np

SHARED_MIN_BYTES = 1 << 15  # batch arrays from this size up go through the shared slots
_ALIGN = 64
_POLL_S = 1.0  # how often a waiting process checks that the other side is alive
WORKER_NAME = "pkdot-loader-worker"

Allocate = Callable[[str, tuple[int, ...], np.dtype], "np.ndarray | None"]


class BatchReader(Protocol):
  """What the workers read with: `read(i, allocate)` is batch i, its arrays allocated by `allocate` when it
  returns one (else by the reader)."""

  def read(self, i: int, allocate: Allocate | None = None) -> dict[str, Any]: ...


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where each large field of a batch lies in a slot: (key, shape of a full batch, dtype, byte offset)."""
  fields: tuple[tuple[str, tuple[int, ...], str, int], ...]
  nbytes: int

  @classmethod
  def of(cls, batch: dict[str, Any], batch_size: int) -> "Layout":
    """The layout of batches shaped as `batch` (read in the main process), `batch_size` rows each."""
    fields, offset = [], 0
    for key, value in batch.items():
      if not isinstance(value, np.ndarray) or value.dtype.kind in "OSUV":
        continue
      shape = (batch_size, *value.shape[1:])
      size = int(np.prod(shape)) * value.dtype.itemsize
      if size < SHARED_MIN_BYTES:
        continue
      fields.append((key, shape, value.dtype.str, offset))
      offset += -(-size // _ALIGN) * _ALIGN
    return cls(tuple(fields), offset)

  def views(self, buffer) -> dict[str, np.ndarray]:
    raw = np.frombuffer(buffer, np.uint8)
    return {key: raw[offset:offset + int(np.prod(shape)) * np.dtype(dtype).itemsize].view(dtype).reshape(shape)
            for key, shape, dtype, offset in self.fields}


class _SlotAllocator:
  """Hands out a slot's arrays to the batch reader (a field of another shape or dtype is left to the reader)."""

  def __init__(self, views: dict[str, np.ndarray]):
    self._views = views
    self.rows: dict[str, int] = {}

  def __call__(self, key: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    view = self._views.get(key)
    if view is None or view.dtype != dtype or view.shape[1:] != shape[1:] or shape[0] > view.shape[0]:
      return None
    self.rows[key] = shape[0]
    return view[:shape[0]]


def _parent_alive(parent: int) -> bool:
  return os.getppid() == parent


def _picklable(error: BaseException) -> BaseException:
  try:
    pickle.loads(pickle.dumps(error))
    return error
  except Exception:  # noqa: BLE001 -- any unpicklable exception is sent as its text
    return RuntimeError(f"{type(error).__name__}: {error}")


def _work(reader: BatchReader, first: int, stop: int, step: int, slots, layout: Layout, free, conn,
          parent: int, threads: int) -> None:
  """A worker's loop: batches first, first + step, ... < stop, each into the next free slot, up to `threads`
  of them read at once and sent in order. Slots are taken in batch order and the main process frees them in
  that order, so the slot a batch gets is free. Ctrl-C is the main process's to handle (it stops the workers);
  SIGTERM ends a worker, as it ends the main process."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  views = [layout.views(slot) for slot in slots]
  todo = enumerate(range(first, stop, step))
  reading: collections.deque = collections.deque()  # (batch, slot, allocator, future), in batch order
  width = max(1, min(threads, len(views) - 1))
  with concurrent.futures.ThreadPoolExecutor(width) as pool:
    while True:
      while len(reading) < width:  # start reads while a thread is idle
        k, i = next(todo, (None, None))
        if i is None:
          break
        while not free.acquire(timeout=_POLL_S):
          if not _parent_alive(parent):
            return
        slot = k % len(views)
        allocate = _SlotAllocator(views[slot])
        reading.append((i, slot, allocate, pool.submit(reader.read, i, allocate)))
      if not reading:
        return
      i, slot, allocate, future = reading.popleft()
      try:
        batch = future.result()
      except BaseException as error:  # noqa: BLE001 -- reported to the main process, which raises it
        conn.send(("error", i, _picklable(error), traceback.format_exc()))
        return
      small = {key: value for key, value in batch.items() if key not in allocate.rows}
      try:
        conn.send(("batch", i, slot, list(batch), allocate.rows, small))
      except (BrokenPipeError, EOFError):  # the main process has closed the loader or exited
        return


class _Worker:
  """The main process's side of one worker: its process, pipe, semaphore and slot views."""

  def __init__(self, ctx, reader: BatchReader, index: int, first: int, stop: int, step: int, layout: Layout,
               depth: int, threads: int):
    slots = [ctx.RawArray("B", max(layout.nbytes, 1)) for _ in range(depth)]
    self.views = [layout.views(slot) for slot in slots]
    self.free = ctx.Semaphore(depth)
    self.conn, send = ctx.Pipe(duplex=False)
    self.process = ctx.Process(target=_work, name=f"{WORKER_NAME}-{index}", daemon=True,
                               args=(reader, first, stop, step, slots, layout, self.free, send, os.getpid(), threads))
    self.process.start()
    send.close()

  def receive(self, i: int) -> dict[str, Any]:
    """Batch i, copied out of its slot (which is then free again)."""
    while not self.conn.poll(_POLL_S):
      if not self.process.is_alive() and not self.conn.poll():
        self._died(i)
    try:
      message = self.conn.recv()
    except EOFError:  # the worker closed its pipe: it has exited
      self._died(i)
    if message[0] == "error":
      _, index, error, text = message
      error.add_note(f"raised in loader worker {self.process.name} reading batch {index}:\n{text}")
      raise error
    _, index, slot, order, rows, small = message
    if index != i:
      raise RuntimeError(f"loader worker {self.process.name} sent batch {index}, expected {i}")
    large = {key: np.array(self.views[slot][key][:n]) for key, n in rows.items()}
    self.free.release()
    return {key: large[key] if key in large else small[key] for key in order}

  def _died(self, i: int) -> NoReturn:
    self.process.join(10)
    raise RuntimeError(f"loader worker {self.process.name} (pid {self.process.pid}) exited with code "
                       f"{self.process.exitcode} before sending batch {i} (its error, if any, is on stderr)")

  def stop(self) -> None:
    if self.process.is_alive():
      self.process.terminate()
      self.process.join(10)
      if self.process.is_alive():
        self.process.kill()
    self.process.join()
    self.conn.close()
    self.views = []


def batches(reader: BatchReader, start: int, stop: int, workers: int, batch_size: int, threads: int = 1,
            depth: int = 3) -> Generator[dict[str, Any], None, None]:
  """Batches start, ..., stop - 1 of `reader`: the first read here (it gives the slots' layout), the others by
  `workers` spawned processes of `threads` read threads each (at most depth - 1: a slot stays with the main
  process until it has copied the batch out), which start before the first batch is yielded. They stop however
  the iteration ends (exhausted, closed, dropped)."""
  if start >= stop:
    return
  first = reader.read(start)
  count = min(workers, stop - start - 1)
  layout = Layout.of(first, batch_size)
  ctx = multiprocessing.get_context("spawn")
  pool: list[_Worker] = []
  try:
    for w in range(count):
      pool.append(_Worker(ctx, reader, w, start + 1 + w, stop, count, layout, depth, threads))
    yield first
    for i in range(start + 1, stop):
      yield pool[(i - start - 1) % count].receive(i)
  finally:
    for worker in pool:
      worker.stop()
