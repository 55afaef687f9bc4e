"""What the `pkdot` commands print, by verbosity, so that a user sees what happens and a redirect keeps results.

Levels (`pkdot ... --verbosity=N`; the default is 1):
  -1  errors only (and the command's result: tables, the report path)
   0  + a line per stage (trained / skipped as done / resuming at step N of M), a one-line summary per epoch,
      the sweep's per-run lines, where to point TensorBoard
   1  + progress bars
   2  + the libraries' INFO logs (absl: orbax, jax)
Progress lines and bars go to stderr, results (tables, report paths) to stdout, so `pkdot demo > table.txt`
keeps the table alone. In multi-process jobs only process 0 prints.
"""

from __future__ import annotations

import sys

QUIET, STAGES, BARS, DEBUG = -1, 0, 1, 2
DEFAULT = BARS
_level = [DEFAULT]


def set_verbosity(level: int) -> None:
  _level[0] = int(level)


def verbosity() -> int:
  return _level[0]


def _is_main_process() -> bool:
  if "jax" not in sys.modules:  # nothing distributed can have started without jax
    return True
  import jax
  return jax.process_index() == 0


def bars_enabled() -> bool:
  """Whether progress bars are shown (verbosity >= 1, process 0)."""
  return verbosity() >= BARS and _is_main_process()


def info(text: str, level: int = STAGES) -> None:
  """A progress line on stderr at `level` and above, written around any active progress bar."""
  if verbosity() < level or not _is_main_process():
    return
  from tqdm import tqdm
  tqdm.write(text, file=sys.stderr)
  sys.stderr.flush()
