"""Claims on shared directories, so that several processes (sweep shards, a second `pkdot train`, cluster tasks
building one dataset) can run at once without writing into each other's files.

A claim is an exclusive `fcntl.flock` on a lock file in the directory. The kernel releases it when its holder
exits, however it exits (crash, SIGKILL, a lost node on a local filesystem), so a dead holder never leaves a
claim stuck: there is no stale-lock clean-up to get wrong. While holding it, the holder writes who it is (pid,
host, start time, command) into the lock file; that text is for messages only, never trusted as the claim.
On NFS, Linux maps `flock` to NFS byte-range locks, which the server drops once a crashed client's lease
expires (a minute or two), so a claim left by a dead node is recovered after that lease.

Claims are re-entrant within a process (a run claims its workdir, its stages claim it again). They are not
shared with forked children in any meaningful way: do not fork while holding one and expect the child to own
it. The lock file itself is never deleted (deleting it would let two processes lock two different files).

Directories claimed by the trainer: a run's workdir (`.pkdot.lock`, for its whole run), a shared teacher
directory of a sweep (while its teacher-side stages run or are checked), and a tfds data directory while a
dataset is built into it (`.pkdot-build-<dataset>.lock`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from typing import Any, Iterator

from pkdot_jax import errors

LOCK_FILE = ".pkdot.lock"


class InUse(errors.UserError, RuntimeError):
  """A directory claimed by another live process (raised by a claim that does not wait)."""

  def __init__(self, path: str, what: str, holder: dict[str, Any] | None):
    self.path, self.what, self.holder = path, what, holder
    super().__init__(f"{what} {os.path.dirname(path)} is in use by {describe(holder)}: wait for it to finish, "
                     f"or use another directory")


def describe(holder: dict[str, Any] | None) -> str:
  """`pid 123 on host h since 2026-01-01 10:00:00 UTC (pkdot train ...)`, or a generic phrase."""
  if not holder:
    return "another process (it has not written its name yet)"
  since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("time", 0)))
  command = f" ({holder['command'][:120]})" if holder.get("command") else ""
  return f"pid {holder.get('pid')} on host {holder.get('host')} since {since}{command}"


# path -> [file descriptor, depth] of the claims this process holds
_held: dict[str, list[int]] = {}


def read_holder(path: str) -> dict[str, Any] | None:
  """The holder record written into lock file `path` (None if absent, empty or half-written)."""
  try:
    with open(path) as f:
      return json.loads(f.read() or "null")
  except (OSError, ValueError):
    return None


def _lock(fd: int, wait: bool) -> bool:
  """flock(LOCK_EX); False when `wait` is off and another process holds it."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    return True
  except OSError as e:
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      return False
    raise


def _write_holder(fd: int) -> None:
  record = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))}
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(record).encode(), 0)


def acquire(path: str, what: str, *, wait: bool, read_only_ok: bool = False) -> None:
  """Claims lock file `path` (its directory is created). Another process holding it: with `wait`, one line to
  stderr naming the holder, then blocks until it is released (an interruption (preemption) ends the wait);
  without, raises InUse naming the holder. `read_only_ok`: a directory where the lock file cannot be created
  (read-only; nobody can write there either) is used unclaimed."""
  path = os.path.abspath(path)
  if path in _held:
    _held[path][1] += 1
    return
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  except OSError as e:
    if read_only_ok and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
      _held[path] = [-1, 1]
      return
    raise
  try:
    if not _lock(fd, wait=False):
      if not wait:
        raise InUse(path, what, read_holder(path))
      print(f"pkdot: waiting for {what} {os.path.dirname(path)}, in use by {describe(read_holder(path))}",
            file=sys.stderr, flush=True)
      from pkdot_jax.train import preemption
      with preemption.interruptible():
        _lock(fd, wait=True)
    _write_holder(fd)
  except BaseException:
    os.close(fd)  # closing the descriptor drops a lock it may hold
    raise
  _held[path] = [fd, 1]


def release(path: str) -> None:
  path = os.path.abspath(path)
  entry = _held[path]
  entry[1] -= 1
  if entry[1] == 0:
    del _held[path]
    if entry[0] >= 0:
      os.ftruncate(entry[0], 0)  # the next reader sees no stale holder
      os.close(entry[0])  # releases the flock


@contextlib.contextmanager
def claim(directory: str, what: str = "directory", *, wait: bool = False, name: str = LOCK_FILE,
          read_only_ok: bool = False) -> Iterator[None]:
  """Holds the claim on `directory` (lock file `name` in it) for the duration of the block."""
  path = os.path.join(directory, name)
  acquire(path, what, wait=wait, read_only_ok=read_only_ok)
  try:
    yield
  finally:
    release(path)


def held(directory: str, name: str = LOCK_FILE) -> bool:
  """Whether this process holds the claim on `directory`."""
  return os.path.abspath(os.path.join(directory, name)) in _held
