"""Preemption: SIGTERM (cloud preemption, a SLURM time limit or `scancel`) and SIGINT (Ctrl-C) stop training
cleanly instead of killing it.

While a stage trains (`handling()`), the first SIGTERM or SIGINT only sets a flag. The trainer finishes the step
in progress, writes a checkpoint of it synchronously, waits for every pending checkpoint write, and raises
`Preempted`; the `pkdot` command prints one line and exits with `EXIT_STATUS` (143 = 128 + SIGTERM for
SIGTERM, 130 = 128 + SIGINT for SIGINT, the shells' convention). Re-running the same command resumes from that
checkpoint: no finished step is lost. A second SIGINT aborts at once (KeyboardInterrupt). A signal that arrives
while the process waits for a directory another process holds (`interruptible()`) ends the wait at once.

Multi-process jobs: the signal may reach the processes at different steps (or only some of them). The
single-process trainer reads its flag after every step (a Python variable: no device work). A multi-process
trainer decides with `agreed()`, a one-integer all-gather, at points every process reaches at the same step
(each log window and epoch end), so all stop at the same step.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

import numpy as np

EXIT_STATUS = {signal.SIGTERM: 143, signal.SIGINT: 130}
SIGNALS = tuple(EXIT_STATUS)


class Preempted(Exception):
  """Training stopped on a signal after saving its state; `exit_status` is the command's exit status."""

  def __init__(self, signum: int, message: str):
    self.signum = signum
    super().__init__(message)

  @property
  def exit_status(self) -> int:
    return EXIT_STATUS[signal.Signals(self.signum)]


_received: list[int] = []  # the signals received, in order
_depth = 0  # nesting of `handling()`
_previous: dict[int, Any] = {}  # the handlers replaced (signal.getsignal values)
_interruptible = 0  # nesting of `interruptible()`


def name(signum: int) -> str:
  return signal.Signals(signum).name


def _handler(signum, frame) -> None:  # pylint: disable=unused-argument
  if signum == signal.SIGINT and signal.SIGINT in _received:
    raise KeyboardInterrupt  # Ctrl-C twice: abort now
  _received.append(signum)
  if _interruptible:
    raise Preempted(signum, f"stopped by {name(signum)} while waiting; nothing was lost: run the same command "
                            f"again to continue")
  again = " (Ctrl-C again to abort at once)" if signum == signal.SIGINT else ""
  # os.write: a print to a stream the interrupted code may be writing to can raise a reentrancy error.
  os.write(2, f"pkdot: {name(signum)} received: finishing this step and saving a checkpoint{again}\n".encode())


@contextlib.contextmanager
def handling() -> Iterator[None]:
  """Installs the handlers for the block (nested uses share the outer installation). Leaving the outermost block
  restores the previous handlers and forgets the signals; one that no check saw (it came after the last step)
  raises `Preempted` there, so the caller still stops. Only the main thread can install signal handlers:
  elsewhere the block runs with the process's handlers unchanged."""
  global _depth
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  if _depth == 0:
    for signum in SIGNALS:
      _previous[signum] = signal.signal(signum, _handler)
  _depth += 1
  try:
    yield
  finally:
    _depth -= 1
    pending = None
    if _depth == 0:
      for signum in SIGNALS:
        signal.signal(signum, _previous.pop(signum))
      pending = requested()
      _received.clear()  # consumed: a `Preempted` is on its way out, or is raised below
  if pending is not None:  # a signal after the last check: the work finished; the caller still has to stop
    raise Preempted(pending, f"stopped by {name(pending)} after the work in progress had finished; nothing was "
                             f"lost")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
  """A wait during which a signal raises `Preempted` at once (when handled at all) instead of setting a flag."""
  global _interruptible
  if _received and _depth:
    raise Preempted(_received[0], f"stopped by {name(_received[0])}; nothing was lost: run the same command "
                                  f"again to continue")
  _interruptible += 1
  try:
    yield
  finally:
    _interruptible -= 1


def requested() -> int | None:
  """The first signal received by this process (None: none)."""
  return _received[0] if _received else None


def agreed() -> int | None:
  """The signal that stops the job, the same in every process (None: go on). Multi-process: an all-gather of
  each process's flag, so every process must call it at the same step."""
  import jax
  if jax.process_count() == 1:
    return requested()
  from jax.experimental import multihost_utils
  flags = np.asarray(multihost_utils.process_allgather(np.int32(requested() or 0)))
  return int(flags.max()) or None


def reset() -> None:
  """Forgets the signals received (tests; a library caller that handled a `Preempted` and goes on)."""
  _received.clear()
