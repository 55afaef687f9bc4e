"""Fusion architecture x T-Net on/off (T-Net off = the video-only student) for PKDOT, over folds x seeds.

  pkdot sweep --sweep=experiments/sweeps/architecture.py --workdir=runs/architecture [--shard=i/n]
"""


def get_sweep():
  return {
      "config": "synthetic:demo",
      "base": {"seeds": (0, 1, 2), "distill.method": "pkdot"},
      "grid": {
          "model.fusion.kind": ["gated", "jca", "concat"],
          "model.student.mode": ["tnet_fusion", "video_only"],
          "data.fold": [0, 1, 2],
      },
  }
