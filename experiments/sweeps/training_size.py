"""Where distillation helps: test accuracy against the number of training subjects (8, 16, 32, 48) for the
video-only student, the same-architecture control, PKDOT and generalized distillation.

60 subjects, 10 subject-disjoint folds of 6 test subjects (synthetic:demo_size): every size is scored on the
same test subjects. Of the 54 other subjects of a fold, n train (teacher, T-Net and student alike: the
privileged signal exists only for them) and the other 54 - n are validation subjects (epoch selection), via
data.val_fraction = (54 - n) / 54 rounded so that round(val_fraction x 54) = 54 - n. One seed per run (10 fold
pairs per cell) keeps the sweep to about an hour on a 2-core CPU.

  pkdot sweep --sweep=experiments/sweeps/training_size.py --workdir=runs/training_size [--shard=i/n]
  pkdot report runs/training_size     # table per size against task_only, training_size.png
"""

# 54 - n validation subjects of 54 for n = 8, 16, 32, 48 training subjects.
VAL_FRACTION = {8: 0.852, 16: 0.704, 32: 0.407, 48: 0.111}


def get_sweep():
  return {
      "config": "synthetic:demo_size",
      "base": {"seeds": (0,)},
      "grid": {"data.val_fraction": [VAL_FRACTION[n] for n in (48, 32, 16, 8)],
               "method": ["video_only", "task_only", "pkdot", "generalized_distillation"],
               "data.fold": list(range(10))},
  }
