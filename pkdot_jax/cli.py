"""The `pkdot` console script.

`run` checks that the trainer's packages are installed, then runs `pkdot_jax.main`. The distribution's core
install is the loss library alone (jax, ott-jax, numpy); the command, the trainer and the datasets need the
`train` extra. Without it `pkdot` prints one line naming what to install and exits with status 2 (like every
other one-line error of the command), instead of an ImportError traceback from deep inside the trainer.

The commands themselves are declared in `main.py` with the `Flag` and `Command` types of `commands.py`.
"""

from __future__ import annotations

import importlib.util
import sys


EXIT_MISSING_EXTRA = 2
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")
# Top-level modules of the `train` extra that the command imports (pyproject.toml, [project.optional-dependencies]).
TRAIN_MODULES = ("flax", "optax", "orbax.checkpoint", "tensorflow_datasets", "grain", "ml_collections", "absl",
                 "tqdm", "matplotlib", "tensorboardX")


def missing_train_modules() -> list[str]:
  """The modules of the `train` extra that cannot be imported here (found without importing them)."""
  missing = []
  for name in TRAIN_MODULES:
    try:
      found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
      found = False
    if not found:
      missing.append(name)
  return missing


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (`pkdot`)."""
  missing = missing_train_modules()
  if missing:
    print(f"pkdot: error: the pkdot command needs the trainer's packages (missing: {', '.join(missing)}); "
          f"install them with: pip install \"pkdot-jax[train]\" (from a checkout: pip install -e \".[train]\")",
          file=sys.stderr)
    sys.exit(EXIT_MISSING_EXTRA)
  from pkdot_jax import main
  main.run(argv)


if __name__ == "__main__":
  run()
