"""Every distillation method (experiments/methods.py) against the video-only student, over folds x seeds.

  pkdot sweep --sweep=experiments/sweeps/methods.py --workdir=runs/methods [--shard=i/n]
"""

from experiments import methods


def get_sweep():
  return {
      "config": "experiments/configs/synthetic.py:demo",
      "base": {"seeds": (0, 1, 2)},
      "grid": {"method": list(methods.DEMO_METHODS), "data.fold": [0, 1, 2]},
  }
