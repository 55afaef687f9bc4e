"""PKDOT ablation against the same-architecture control, on the default demo's data and protocol (48 subjects,
10 subject-disjoint folds x 2 seeds, fixed epochs): anchors least / most similar / all, k 4 / 8 / 16, shift min /
affine, lambda 0.3 / 0.6 / 1.2, epsilon 0.01 / 0.05 / 0.1, one factor at a time, and PKDOT with generalized
distillation (presets in pkdot_jax/study/methods.py, ABLATIONS). Every variant shares one compiled student
program with the control.

  pkdot sweep --sweep=experiments/sweeps/pkdot_ablation.py --workdir=runs/pkdot_ablation [--shard=i/n]

PKDOT combined with generalized distillation (`pkdot_plus_gd`: generalized distillation's objective + 0.6 x
PKDOT, one student loss with two terms) is compared with the control like every variant, and with generalized
distillation alone (a contrast of its own: does PKDOT add anything to it?).
"""

from pkdot_jax.study import methods


def get_sweep():
  return {
      "config": "synthetic:demo",
      "base": {"seeds": (0, 1)},
      "grid": {"method": list(methods.ABLATION_METHODS), "data.fold": list(range(10))},
      "contrasts": {"pkdot_plus_gd": "generalized_distillation"},
  }
