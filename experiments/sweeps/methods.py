"""Every distillation method (pkdot_jax/study/methods.py) against the video-only student, over folds x seeds.

  pkdot sweep --sweep=experiments/sweeps/methods.py --workdir=runs/methods [--shard=i/n]
"""

from pkdot_jax.study import methods


def get_sweep():
  return {
      "config": "synthetic:demo",
      "base": {"seeds": (0, 1, 2)},
      "grid": {"method": list(methods.DEMO_METHODS), "data.fold": [0, 1, 2]},
  }
