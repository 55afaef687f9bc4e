"""PKDOT ablation on the synthetic data: anchors k x epsilon x anchor mode x shift, over folds; the distillation
weights and seeds of each cell train side by side in one compiled program (vmap).

  pkdot sweep --sweep=experiments/sweeps/pkdot_hparams.py --workdir=runs/pkdot_hparams [--shard=i/n]
"""

CONFIG = "synthetic:demo"


def get_sweep():
  return {
      "config": CONFIG,
      "base": {"seeds": (0, 1, 2), "distill.weight": (0.2, 0.6, 1.0)},
      "grid": {
          "distill.kwargs.k": [4, 8, 16],
          "distill.kwargs.epsilon": [0.01, 0.05],
          "distill.kwargs.anchors": ["least_similar", "most_similar", "all"],
          "distill.kwargs.shift": ["min", "affine"],
          "data.fold": [0, 1, 2],
      },
  }
