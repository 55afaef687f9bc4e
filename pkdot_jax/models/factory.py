"""Model factory: ``default_config(size)`` -> ConfigDict (``config.model``), ``build_teacher/student/tnet(cfg)``.

Config fields (``cfg = config.model``):

  size                "tiny" | "paper" (informational; which preset filled the fields)
  task                "classification" | "regression" (regression: tanh outputs in [-1, 1])
  num_outputs         2 (Biovid BL1 vs PA4), 5 (pain levels) or 2 (valence, arousal)
  dtype               "float32" | "bfloat16": compute dtype of backbones and fusion. Parameters, BatchNorm
                      statistics, spectrogram front-ends, heads and the T-Net stay float32.
  privileged          "physio" | "audio": which batch entry the teacher reads besides "video"
  privileged_backbone "resnet2d18" (log spectrogram / log-mel + ResNet-18, one input channel) |
                      "cnn1d" (raw physio window; physio only)
  video.widths, video.blocks, video.stem_width
                      R3D-18 stage widths, basic blocks per stage, stem channels
                      (paper (64, 128, 256, 512), (2, 2, 2, 2), 64)
  video.arch          "r3d18" (default when absent) | "frame_cnn" (framecnn.FrameCNN: a per-frame 2-D CNN with
                      temporal mean/range pooling, `video.widths` its stage widths; light, for small CPU clips) |
                      "stack_cnn" (the same 2-D CNN on the frames stacked along channels: early temporal fusion)
  video.conv3d_impl   "auto" | "xla" | "frames": how 3-D convolutions run (resnet.Conv3D; same results)
  video.pretrained, privileged_net.pretrained     "" (random init) or a torchvision weight file (.npz, or .pth
                      with torch): r3d_18 for the R3D-18, resnet18 for the physio / audio ResNet-18
                      (models/pretrained.py; the trainer loads it in the first stage that builds the backbone)
  privileged_net.widths, .blocks, .stem_width     ResNet-18 knobs for the spectrogram backbone
  privileged_net.cnn_widths, .cnn_kernel          1-D CNN knobs (last width = privileged embedding size)
  spectrogram.fs, .nperseg, .noverlap             physio front-end: log PSD at the true rate (Biovid: 512 Hz;
                                                  the authors' code used 1000 Hz, a bug), per channel,
                                                  channels stacked along frequency
  logmel.fs, .nfft, .hop_length, .num_mels        audio front-end
  fusion.kind         "gated" (authors' gated cross-attention, per-sample) | "jca" | "concat"
  fusion.embed_dim    fused embedding size D (also the MT-PKDOT adapters' and the video-only projection's)
  fusion.num_tokens   tokens each pooled modality embedding is split into (must divide Dv and Dp)
  fusion.num_heads, fusion.mlp_dim, fusion.dropout   gated transformer (dropout > 0 needs a "dropout" rng)
  fusion.jca_token_dim, fusion.jca_hidden         JCA token width d and attention width k
  fusion.concat_hidden                            concat + MLP hidden width
  tnet.hidden         T-Net hidden widths (paper (256, 128, 256): 512-256-128-256-512)
  tnet.output_activation  "none" | "sigmoid" | "tanh" | "relu"
  student.mode        "tnet_fusion" | "video_only"
  student.stop_gradient_tnet_input   authors: True
  student.video_only_projection      video-only: project to fusion.embed_dim (True) or use backbone feature
  multitask           MT-PKDOT teacher adapters + per-modality heads (aux outputs)
  input_shapes.video (T, H, W, 3), .physio (L, C), .audio (L,)   per-example shapes used by dummy_batch

The front-end rates (spectrogram.fs, logmel.fs) must equal the dataset's (tfds metadata "physio_fs",
"audio_fs"): the model cannot see the rate of the arrays it is given.

Builders: build_teacher, build_student, build_tnet, build_unimodal(cfg, "video" | cfg.privileged) (backbone
pretraining; submodule names match the teacher's), and the parts (build_video_backbone,
build_privileged_backbone, build_fusion). init_variables(model, batch, seed) gives {"params", "batch_stats"}.

Backbones are chosen by name from VIDEO_BACKBONES (`video.arch`) and PRIVILEGED_BACKBONES
(`privileged_backbone`); each declares its output width as `output_dim`, which gives the visual embedding size
Dv (visual_dim) and the privileged Dp (privileged_dim). The T-Net maps Dv -> Dp.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pkdot_jax import errors
from pkdot_jax.models.assemblies import Student, Teacher, Unimodal
from pkdot_jax.models.backbones import AudioLogMelResNet, PhysioCNN1D, PhysioSpectrogramResNet
from pkdot_jax.models.framecnn import FrameCNN
from pkdot_jax.models.fusion import ConcatFusion, GatedCrossAttentionFusion, JointCrossAttentionFusion
from pkdot_jax.models.resnet import R3D18
from pkdot_jax.models.tnet import TNet

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def default_config(size: str = "tiny") -> ml_collections.ConfigDict:
  """Model config preset. "paper": R3D-18 + ResNet-18 at full width; "tiny": a CPU-test variant."""
  if size not in ("tiny", "paper"):
    raise ValueError(f"default_config: size must be 'tiny' or 'paper', got {size!r}")
  paper = size == "paper"
  c = ml_collections.ConfigDict()
  c.size = size
  c.task = "classification"
  c.num_outputs = 2
  c.dtype = "float32"
  c.privileged = "physio"
  c.privileged_backbone = "resnet2d18"
  c.multitask = False

  widths, blocks = ((64, 128, 256, 512), (2, 2, 2, 2)) if paper else ((8, 16, 32, 64), (1, 1, 1, 1))
  c.video = ml_collections.ConfigDict(dict(widths=widths, blocks=blocks, stem_width=widths[0],
                                           conv3d_impl="auto", pretrained=""))
  c.privileged_net = ml_collections.ConfigDict(dict(
      widths=widths, blocks=blocks, stem_width=widths[0],
      cnn_widths=(32, 64, 128, 256, 512) if paper else (8, 16, 32, 64), cnn_kernel=7, pretrained=""))
  c.spectrogram = ml_collections.ConfigDict(dict(
      fs=512.0, nperseg=128 if paper else 64, noverlap=96 if paper else 32))
  # Audio rate: 16 kHz for Aff-Wild2 as extracted for the paper setting, 8 kHz for the synthetic dataset.
  c.logmel = ml_collections.ConfigDict(dict(
      fs=16000.0 if paper else 8000.0, nfft=512 if paper else 256, hop_length=160 if paper else 64,
      num_mels=64 if paper else 32))
  embed = 512 if paper else 64
  c.fusion = ml_collections.ConfigDict(dict(
      kind="gated", embed_dim=embed, num_tokens=8 if paper else 4, num_heads=2, mlp_dim=embed, dropout=0.0,
      jca_token_dim=256 if paper else 32, jca_hidden=32 if paper else 8, concat_hidden=embed))
  c.tnet = ml_collections.ConfigDict(dict(
      hidden=(256, 128, 256) if paper else (32, 16, 32), output_activation="none"))
  c.student = ml_collections.ConfigDict(dict(
      mode="tnet_fusion", stop_gradient_tnet_input=True, video_only_projection=True))
  c.input_shapes = ml_collections.ConfigDict(dict(
      video=(10, 112, 112, 3) if paper else (8, 32, 32, 3),
      # Biovid: 5.5 s at 512 Hz; tiny = the synthetic dataset's defaults (2 s of 2-channel physio at 512 Hz,
      # 0.256 s of audio at 8 kHz).
      physio=(2816, 1) if paper else (1024, 2),
      audio=(16000,) if paper else (2048,)))
  return c


def _dtype(cfg: ml_collections.ConfigDict) -> Any:
  if cfg.dtype not in _DTYPES:
    raise errors.ConfigError(f"model config: dtype must be one of {sorted(_DTYPES)}, got {cfg.dtype!r}")
  return _DTYPES[cfg.dtype]


def _check_choice(field: str, value: Any, choices: tuple[str, ...]) -> None:
  if value not in choices:
    raise errors.ConfigError(f"model config: {field} must be one of {choices}, got {value!r}")


def visual_dim(cfg: ml_collections.ConfigDict) -> int:
  """Dv: the output width the configured video backbone declares (its ``output_dim``)."""
  return int(build_video_backbone(cfg).output_dim)


def privileged_dim(cfg: ml_collections.ConfigDict) -> int:
  """Dp: the output width the configured privileged backbone declares (its ``output_dim``)."""
  return int(build_privileged_backbone(cfg).output_dim)


# Video backbones by `video.arch`: a builder (model config, compute dtype) -> module mapping (B, T, H, W, 3) to
# (B, D) and declaring D as its `output_dim`.
BackboneBuilder = Callable[[ml_collections.ConfigDict, Any], Any]


def _r3d18(cfg: ml_collections.ConfigDict, dtype: Any) -> R3D18:
  return R3D18(widths=tuple(cfg.video.widths), blocks=tuple(cfg.video.blocks), stem_width=int(cfg.video.stem_width),
               dtype=dtype, conv3d_impl=cfg.video.get("conv3d_impl", "auto"))


def _frame_cnn(temporal: str) -> BackboneBuilder:
  return lambda cfg, dtype: FrameCNN(widths=tuple(cfg.video.widths), dtype=dtype, temporal=temporal)


VIDEO_BACKBONES: dict[str, BackboneBuilder] = {
    "r3d18": _r3d18, "frame_cnn": _frame_cnn("late"), "frame_cnn_spatial": _frame_cnn("late_spatial"),
    "stack_cnn": _frame_cnn("early"),
}


def _spectrogram_resnet(cfg: ml_collections.ConfigDict, dtype: Any):
  net = cfg.privileged_net
  resnet = dict(widths=tuple(net.widths), blocks=tuple(net.blocks), stem_width=int(net.stem_width), dtype=dtype)
  if cfg.privileged == "physio":
    s = cfg.spectrogram
    return PhysioSpectrogramResNet(fs=float(s.fs), nperseg=int(s.nperseg), noverlap=int(s.noverlap), **resnet)
  m = cfg.logmel
  return AudioLogMelResNet(fs=float(m.fs), nfft=int(m.nfft), hop_length=int(m.hop_length),
                           num_mels=int(m.num_mels), **resnet)


def _cnn1d(cfg: ml_collections.ConfigDict, dtype: Any) -> PhysioCNN1D:
  if cfg.privileged != "physio":
    raise errors.ConfigError(f"model config: privileged_backbone 'cnn1d' works on the raw physio window only, got "
                             f"privileged={cfg.privileged!r}")
  net = cfg.privileged_net
  return PhysioCNN1D(widths=tuple(net.cnn_widths), kernel_size=int(net.cnn_kernel), dtype=dtype)


# Privileged backbones by `privileged_backbone`: a builder for batch[cfg.privileged] -> (B, D), D its `output_dim`.
PRIVILEGED_BACKBONES: dict[str, BackboneBuilder] = {"resnet2d18": _spectrogram_resnet, "cnn1d": _cnn1d}


def build_video_backbone(cfg: ml_collections.ConfigDict):
  arch = cfg.video.get("arch", "r3d18")
  _check_choice("video.arch", arch, tuple(VIDEO_BACKBONES))
  return VIDEO_BACKBONES[arch](cfg, _dtype(cfg))


def build_privileged_backbone(cfg: ml_collections.ConfigDict):
  _check_choice("privileged", cfg.privileged, ("physio", "audio"))
  _check_choice("privileged_backbone", cfg.privileged_backbone, tuple(PRIVILEGED_BACKBONES))
  return PRIVILEGED_BACKBONES[cfg.privileged_backbone](cfg, _dtype(cfg))


def build_fusion(cfg: ml_collections.ConfigDict):
  f = cfg.fusion
  _check_choice("fusion.kind", f.kind, ("gated", "jca", "concat"))
  _check_choice("task", cfg.task, ("classification", "regression"))
  for name, dim in (("visual", visual_dim(cfg)), ("privileged", privileged_dim(cfg))):
    if f.kind != "concat" and dim % f.num_tokens:
      raise errors.ConfigError(f"model config: fusion.num_tokens={f.num_tokens} must divide the {name} embedding "
                               f"size {dim}")
  common = dict(num_outputs=int(cfg.num_outputs), task=cfg.task, embed_dim=int(f.embed_dim))
  if f.kind == "gated":
    return GatedCrossAttentionFusion(num_tokens=int(f.num_tokens), num_heads=int(f.num_heads),
                                     mlp_dim=int(f.mlp_dim), dropout=float(f.dropout), dtype=_dtype(cfg),
                                     **common)
  if f.kind == "jca":
    return JointCrossAttentionFusion(num_tokens=int(f.num_tokens), token_dim=int(f.jca_token_dim),
                                     hidden=int(f.jca_hidden), dtype=_dtype(cfg), **common)
  return ConcatFusion(hidden=int(f.concat_hidden), dtype=_dtype(cfg), **common)


def build_tnet(cfg: ml_collections.ConfigDict) -> TNet:
  """T-Net mapping the visual embedding (B, Dv) to the privileged embedding (B, Dp)."""
  activation = cfg.tnet.output_activation
  return TNet(out_dim=privileged_dim(cfg), hidden=tuple(cfg.tnet.hidden), in_dim=visual_dim(cfg),
              output_activation=None if activation in (None, "none") else activation)


def build_teacher(cfg: ml_collections.ConfigDict) -> Teacher:
  return Teacher(visual_backbone=build_video_backbone(cfg), privileged_backbone=build_privileged_backbone(cfg),
                 fusion=build_fusion(cfg), privileged_key=cfg.privileged, multitask=bool(cfg.multitask),
                 num_outputs=int(cfg.num_outputs), task=cfg.task, embed_dim=int(cfg.fusion.embed_dim))


def build_student(cfg: ml_collections.ConfigDict, *, freeze_backbone: bool = False) -> Student:
  """`freeze_backbone`: the visual backbone runs in eval mode without gradient (the authors' student regime)."""
  _check_choice("student.mode", cfg.student.mode, ("tnet_fusion", "video_only"))
  _check_choice("task", cfg.task, ("classification", "regression"))
  tnet_fusion = cfg.student.mode == "tnet_fusion"
  return Student(visual_backbone=build_video_backbone(cfg),
                 fusion=build_fusion(cfg) if tnet_fusion else None,
                 tnet=build_tnet(cfg) if tnet_fusion else None,
                 mode=cfg.student.mode, stop_gradient_tnet_input=bool(cfg.student.stop_gradient_tnet_input),
                 freeze_backbone=freeze_backbone, num_outputs=int(cfg.num_outputs), task=cfg.task,
                 embed_dim=int(cfg.fusion.embed_dim) if cfg.student.video_only_projection else None)


def build_unimodal(cfg: ml_collections.ConfigDict, modality: str) -> Unimodal:
  """Single-modality model (backbone + head) for pretraining: modality "video" or cfg.privileged."""
  if modality == "video":
    backbone = dict(visual_backbone=build_video_backbone(cfg))
  elif modality == cfg.privileged:
    backbone = dict(privileged_backbone=build_privileged_backbone(cfg))
  else:
    raise errors.ConfigError(f"build_unimodal: modality must be 'video' or the configured privileged modality "
                             f"{cfg.privileged!r}, got {modality!r}")
  _check_choice("task", cfg.task, ("classification", "regression"))
  return Unimodal(privileged_key=cfg.privileged, num_outputs=int(cfg.num_outputs), task=cfg.task, **backbone)


def dummy_batch(cfg: ml_collections.ConfigDict, batch_size: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
  """A random batch with the configured input shapes (for init, eval_shape and smoke tests)."""
  rng = np.random.default_rng(seed)
  shapes = cfg.input_shapes
  return {
      "video": rng.standard_normal((batch_size, *shapes.video)).astype(np.float32),
      "physio": rng.standard_normal((batch_size, *shapes.physio)).astype(np.float32),
      "audio": rng.standard_normal((batch_size, *shapes.audio)).astype(np.float32),
  }


def init_variables(model, batch: dict[str, Any], seed: int = 0, prng_impl: str = "rbg") -> dict:
  """Jitted ``model.init(key, batch, train=False)`` -> {"params", "batch_stats"}.

  The key uses the "rbg" PRNG by default: XLA:CPU compiles a threefry-based init of many tensors slowly
  (tiny R3D-18: 17 s with threefry, 2.7 s with rbg, on a 2-core EPYC); the forward pass is unaffected.
  Pass ``prng_impl="threefry2x32"`` for JAX's default generator.
  """
  key = jax.random.key(seed, impl=prng_impl)
  return jax.jit(model.init, static_argnames="train")(key, batch, train=False)
