"""What the processes of one job agree on: which one writes the JSON records, barriers, and claims on
directories.

Multi-process jobs run the same code in every process: every process reads its shard of each batch, joins
every step, evaluation and checkpoint (orbax writes each array once), and process 0 alone writes the JSON
files (config, run info, metrics, results).
"""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np

from pkdot_jax.train import locks


def is_writer() -> bool:
  """Process 0 writes the JSON files of a multi-process job (every process writes its part of checkpoints)."""
  return jax.process_index() == 0


def sync(name: str) -> None:
  """Every process of the job waits here until all have arrived (nothing with one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def claim(directory: str, what: str, wait: bool):
  """Claims `directory` for this job (`locks`): a process that finds it claimed by another job waits (`wait`)
  or raises locks.InUse naming the holder. In a multi-process job process 0 holds the claim for all and the
  others learn its outcome, so every process raises (or goes on) alike."""
  if jax.process_count() == 1:
    with locks.claim(directory, what, wait=wait):
      yield
    return
  from jax.experimental import multihost_utils
  error = None
  if is_writer():
    try:
      locks.acquire(os.path.join(directory, locks.LOCK_FILE), what, wait=wait)
    except locks.InUse as e:
      error = e
  if int(multihost_utils.broadcast_one_to_all(np.int32(error is not None))):
    path = os.path.join(os.path.abspath(directory), locks.LOCK_FILE)
    raise error or locks.InUse(path, what, locks.read_holder(path))
  try:
    yield
  finally:
    if is_writer():
      locks.release(os.path.join(directory, locks.LOCK_FILE))
