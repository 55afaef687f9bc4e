"""Model FLOPs of the PKDOT models, counted analytically, and two cross-checks.

Convention (the usual one for MFU): only multiply-accumulates of convolutions and matrix products count,
forward FLOPs = 2 x MACs; BatchNorm, ReLU, softmax, pooling, the spectrogram front-end, the optimizer and
the Sinkhorn solver are left out (they are memory-bound and small in FLOPs: see `elementwise` in XLA's count).
Padding taps count (every output element costs kernel_volume x C_in MACs), as XLA counts them.

Train step (per clip):
  student: forward + weight gradient (= forward) + input gradient (= forward, except the first convolution,
           whose input, the video, needs no gradient) = 3 x forward - stem forward;
  teacher: forward only (frozen, eval mode, under stop_gradient), unless its outputs come from the cache.

`model_flops(cfg)` gives these per clip for a model config (`pkdot_jax.models.default_config`); the numbers
for the paper setup are printed by `python -m experiments.bench.flops`.

Cross-checks (tests/bench/test_flops.py): `jaxpr_flops` counts the same MACs from the traced program of the
real Flax modules (every conv_general_dilated / dot_general, whatever the Conv3D implementation), and
`xla_flops` reads XLA's own count (`compiled.cost_analysis()["flops"]`), which also counts element-wise work.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any, Callable, Sequence

import numpy as np


# ------------------------------------------------------------------------------------------------ layers
def conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
  """Output length of a convolution along one axis with symmetric padding `pad`."""
  return (size + 2 * pad - kernel) // stride + 1


def conv_flops(out_spatial: Sequence[int], kernel: Sequence[int], c_in: int, c_out: int) -> int:
  """Forward FLOPs of one bias-free convolution for one example: 2 x prod(out) x prod(kernel) x C_in x C_out."""
  return 2 * math.prod(out_spatial) * math.prod(kernel) * c_in * c_out


def valid_taps(size: int, kernel: int, stride: int, pad: int) -> int:
  """Sum over the output positions of one axis of the kernel taps that land inside the (unpadded) input."""
  out = conv_out(size, kernel, stride, pad)
  return sum(sum(1 for k in range(kernel) if 0 <= o * stride - pad + k < size) for o in range(out))


def conv_flops_valid(in_spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                     pad: Sequence[int], c_in: int, c_out: int) -> int:
  """Like `conv_flops` but without the taps that fall on zero padding: what XLA's cost analysis counts."""
  taps = math.prod(valid_taps(n, k, s, p) for n, k, s, p in zip(in_spatial, kernel, stride, pad))
  return 2 * taps * c_in * c_out


def dense_flops(tokens: int, d_in: int, d_out: int) -> int:
  return 2 * tokens * d_in * d_out


# --------------------------------------------------------------------------------------------- backbones
def resnet_flops(spatial: Sequence[int], in_channels: int, widths: Sequence[int], blocks: Sequence[int],
                 stem_width: int, ndim: int, count_padding: bool = True) -> dict[str, int]:
  """Forward FLOPs of R3D-18 (ndim=3, input (T, H, W)) or ResNet-18 (ndim=2, input (H, W)), one example.

  Layout as pkdot_jax.models.resnet: R3D stem (3, 7, 7) stride (1, 2, 2) pad (1, 3, 3), no max-pool;
  2-D stem 7x7 stride 2 pad 3 + max-pool 3x3 stride 2 pad 1; basic blocks of two 3^ndim convolutions, the
  first block of stages 2.. strides 2 on every axis and has a 1^ndim stride-2 projection.
  With `count_padding=False`, taps on zero padding are left out (XLA's cost-analysis convention).
  Returns {"stem": ..., "stages": ..., "total": ...}.
  """

  def one(shape, kernel, stride, pad, c_in, c_out):
    if count_padding:
      out = [conv_out(n, k, s, p) for n, k, s, p in zip(shape, kernel, stride, pad)]
      return conv_flops(out, kernel, c_in, c_out)
    return conv_flops_valid(shape, kernel, stride, pad, c_in, c_out)

  shape = list(spatial)
  if ndim == 3:
    kernel, stride, pad = (3, 7, 7), (1, 2, 2), (1, 3, 3)
  else:
    kernel, stride, pad = (7, 7), (2, 2), (3, 3)
  stem = one(shape, kernel, stride, pad, in_channels, stem_width)
  shape = [conv_out(n, k, s, p) for n, k, s, p in zip(shape, kernel, stride, pad)]
  if ndim == 2:
    shape = [conv_out(n, 3, 2, 1) for n in shape]  # max-pool (no MACs)
  stages, c_in = 0, stem_width
  for stage, (width, num_blocks) in enumerate(zip(widths, blocks)):
    for block in range(num_blocks):
      s = 2 if (stage > 0 and block == 0) else 1
      out = [conv_out(n, 3, s, 1) for n in shape]
      stages += one(shape, (3,) * ndim, (s,) * ndim, (1,) * ndim, c_in, width)
      stages += one(out, (3,) * ndim, (1,) * ndim, (1,) * ndim, width, width)
      if s != 1 or c_in != width:
        stages += one(shape, (1,) * ndim, (s,) * ndim, (0,) * ndim, c_in, width)
      shape, c_in = out, width
  return {"stem": stem, "stages": stages, "total": stem + stages}


def attention_flops(q_tokens: int, kv_tokens: int, dim: int) -> int:
  """Flax MultiHeadDotProductAttention with qkv_features = out_features = dim (any head count)."""
  projections = dense_flops(q_tokens, dim, dim) + 2 * dense_flops(kv_tokens, dim, dim) + dense_flops(
      q_tokens, dim, dim)
  return projections + 2 * 2 * q_tokens * kv_tokens * dim  # scores q.k and the weighted sum of values


def gated_fusion_flops(dv: int, dp: int, embed: int, tokens: int, mlp: int, num_outputs: int) -> int:
  """GatedCrossAttentionFusion (pkdot_jax.models.fusion): tokenizers, two encoder blocks, two
  cross-attentions, per-token gate, head."""
  flops = dense_flops(tokens, dv // tokens, embed) + dense_flops(tokens, dp // tokens, embed)
  encoder = attention_flops(tokens, tokens, embed) + dense_flops(tokens, embed, mlp) + dense_flops(
      tokens, mlp, embed)
  flops += 2 * encoder + 2 * attention_flops(tokens, tokens, embed)
  flops += dense_flops(tokens, 2 * embed, 1) + dense_flops(1, embed, num_outputs)
  return flops


def mlp_flops(sizes: Sequence[int]) -> int:
  return sum(dense_flops(1, a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def spectrogram_image_shape(cfg) -> tuple[int, int]:
  """(rows, frames) of the one-channel image the physio ResNet sees: C channels x F frequencies stacked."""
  from pkdot_jax import signal  # pylint: disable=g-import-not-at-top
  length, channels = cfg.input_shapes.physio
  s = cfg.spectrogram
  spec = signal.log_power_spectrogram(np.zeros((1, channels, length), np.float32), fs=float(s.fs),
                                      nperseg=int(s.nperseg), noverlap=int(s.noverlap))
  return int(spec.shape[-3] * spec.shape[-2]), int(spec.shape[-1])


def model_flops(cfg, count_padding: bool = True) -> dict[str, Any]:
  """Per-clip FLOPs of the student and teacher forward and of one student train step, for a model config.

  Supports the configurations the benchmark uses: R3D-18 video backbone, privileged "physio" with the
  "resnet2d18" spectrogram backbone, "gated" fusion, student mode "tnet_fusion". `count_padding=False`
  leaves out convolution taps on zero padding (to compare with XLA's count).
  """
  if cfg.privileged != "physio" or cfg.privileged_backbone != "resnet2d18" or cfg.fusion.kind != "gated":
    raise ValueError(f"model_flops: counts physio + resnet2d18 + gated fusion only, got privileged="
                     f"{cfg.privileged!r}, privileged_backbone={cfg.privileged_backbone!r}, "
                     f"fusion.kind={cfg.fusion.kind!r}")
  if cfg.student.mode != "tnet_fusion":
    raise ValueError(f"model_flops: student.mode must be 'tnet_fusion', got {cfg.student.mode!r}")
  t, h, w, c = cfg.input_shapes.video
  v = cfg.video
  video = resnet_flops((t, h, w), c, v.widths, v.blocks, v.stem_width, 3, count_padding)
  rows, frames = spectrogram_image_shape(cfg)
  p = cfg.privileged_net
  physio = resnet_flops((rows, frames), 1, p.widths, p.blocks, p.stem_width, 2, count_padding)
  dv, dp = int(v.widths[-1]), int(p.widths[-1])
  f = cfg.fusion
  fusion = gated_fusion_flops(dv, dp, int(f.embed_dim), int(f.num_tokens), int(f.mlp_dim), int(cfg.num_outputs))
  tnet = mlp_flops((dv, *cfg.tnet.hidden, dp))
  student_fwd = video["total"] + tnet + fusion
  teacher_fwd = video["total"] + physio["total"] + fusion
  student_train = 3 * student_fwd - video["stem"]
  return {
      "video_backbone_fwd": video["total"], "video_stem_fwd": video["stem"],
      "physio_backbone_fwd": physio["total"], "physio_image": [rows, frames],
      "fusion_fwd": fusion, "tnet_fwd": tnet,
      "student_fwd": student_fwd, "teacher_fwd": teacher_fwd,
      "student_train": student_train,
      "train_step_with_teacher": student_train + teacher_fwd,
      "train_step_cached": student_train,
  }


# --------------------------------------------------------------------------------------------- cross-checks
def _shape_macs(eqn) -> int:
  """MACs of one conv_general_dilated or dot_general equation, from its shapes."""
  name = eqn.primitive.name
  out = eqn.outvars[0].aval
  if name == "conv_general_dilated":
    lhs, rhs = (v.aval for v in eqn.invars[:2])
    dn = eqn.params["dimension_numbers"]
    rhs_spec = dn.rhs_spec  # (out_feature, in_feature, *spatial)
    kernel_spatial = math.prod(rhs.shape[d] for d in rhs_spec[2:])
    c_in_per_group = rhs.shape[rhs_spec[1]]
    return math.prod(out.shape) * kernel_spatial * c_in_per_group
  if name == "dot_general":
    lhs = eqn.invars[0].aval
    (contract_lhs, _), _ = eqn.params["dimension_numbers"]
    return math.prod(out.shape) * math.prod(lhs.shape[d] for d in contract_lhs)
  return 0


def jaxpr_flops(fn: Callable, *args, **kwargs) -> int:
  """2 x MACs of every convolution and matrix product in the traced program of `fn(*args)`.

  Recurses into sub-jaxprs (jit, custom_jvp/vjp, remat, cond branches: the largest). Loops (while/scan) are
  counted once per body, so this is meant for the models, not for the Sinkhorn solver.
  """
  import jax  # pylint: disable=g-import-not-at-top

  def count(jaxpr) -> int:
    total = 0
    for eqn in jaxpr.eqns:
      total += _shape_macs(eqn)
      subs = []
      for value in eqn.params.values():
        for item in (value if isinstance(value, (tuple, list)) else (value,)):
          inner = getattr(item, "jaxpr", item)
          if hasattr(inner, "eqns"):
            subs.append(inner)
      if eqn.primitive.name == "cond" and subs:
        total += max(count(s) for s in subs)
      else:
        total += sum(count(s) for s in subs)
    return total

  return 2 * count(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)


def xla_flops(fn: Callable, *args) -> float:
  """XLA's flop count of the compiled `jax.jit(fn)(*args)` (all ops: MACs x 2 plus element-wise work)."""
  import jax  # pylint: disable=g-import-not-at-top
  analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax returned one dict per computation
    analysis = analysis[0]
  return float(analysis["flops"])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
  parser.add_argument("--batch", type=int, default=128)
  args = parser.parse_args(argv)
  from pkdot_jax import models  # pylint: disable=g-import-not-at-top
  counts = model_flops(models.default_config(args.preset))
  gflops = {k: (round(v / 1e9, 3) if isinstance(v, int) else v) for k, v in counts.items()}
  print(json.dumps({"what": "model_flops_per_clip_G", "preset": args.preset, **gflops}))
  print(json.dumps({"what": "model_flops_per_step_T", "preset": args.preset, "batch": args.batch,
                    "with_teacher": round(args.batch * counts["train_step_with_teacher"] / 1e12, 3),
                    "cached": round(args.batch * counts["train_step_cached"] / 1e12, 3)}))


if __name__ == "__main__":
  main()
