"""The `pkdot` command with a pause for signal tests: `python pause_worker.py PAUSE_AT_BATCH pkdot-args...`.

Before the training batch number PAUSE_AT_BATCH (counted from 1 over the whole process) is handed to the
trainer, it prints `paused` to stdout and reads one line from stdin: the test sends its signal while the process
waits there, at a known step, then lets it go on. PAUSE_AT_BATCH=0: no pause (the plain command).
PAUSE_AT_BATCH=start: the command's training modules are imported, then it prints `ready` and reads one line
before the command runs (a test starts it while another process trains and lets it run when due)."""

import faulthandler
import signal
import sys


def _die_with_parent() -> None:
  """Linux: killed when the test that started it dies (an interrupted pytest leaves no worker behind)."""
  try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def _pause_before(batch_number: int) -> None:
  from pkdot_jax.train import input as input_lib

  original = input_lib.Data.train_batches
  count = [0]

  def train_batches(self, *args, **kwargs):
    for batch in original(self, *args, **kwargs):
      count[0] += 1
      if count[0] == batch_number:
        print("paused", flush=True)
        sys.stdin.readline()
      yield batch
  input_lib.Data.train_batches = train_batches


if __name__ == "__main__":
  _die_with_parent()
  faulthandler.dump_traceback_later(600, exit=True)  # a hung worker shows its stacks and exits
  if sys.argv[1] == "start":
    from pkdot_jax.train import loop  # noqa: F401 (the imports that take a new process's first seconds)
    print("ready", flush=True)
    sys.stdin.readline()
  elif int(sys.argv[1]):
    _pause_before(int(sys.argv[1]))
  from pkdot_jax import main
  main.run(["pkdot"] + sys.argv[2:])
