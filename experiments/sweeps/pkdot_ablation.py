"""PKDOT ablation against the same-architecture control, on the default demo's data and protocol (48 subjects,
10 subject-disjoint folds x 2 seeds, fixed epochs): anchors least / most similar / all, k 4 / 8 / 16, shift min /
affine, lambda 0.3 / 0.6 / 1.2, epsilon 0.01 / 0.05 / 0.1, one factor at a time (presets in
pkdot_jax/study/methods.py, ABLATIONS). Every variant shares one compiled student program with the control.

  pkdot sweep --sweep=experiments/sweeps/pkdot_ablation.py --workdir=runs/pkdot_ablation [--shard=i/n]

PKDOT combined with generalized distillation is not in the grid: a student run has one distillation loss
(config.distill.method, one weight); a sum of two registry losses needs a list of (method, weight, kwargs)
terms in the trainer's student loss.
"""

from pkdot_jax.study import methods


def get_sweep():
  return {
      "config": "synthetic:demo",
      "base": {"seeds": (0, 1)},
      "grid": {"method": list(methods.ABLATION_METHODS), "data.fold": list(range(10))},
  }
