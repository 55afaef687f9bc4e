"""ResNet backbones in torchvision's layout, channels-last: R3D-18 (video), ResNet-18 (spectrograms), 1-D CNN.

All backbones map an input batch to a (B, D) embedding by global average pooling after the last stage; no
classifier. BatchNorm follows torch's conventions (torch momentum 0.1 == flax momentum 0.9, eps 1e-5) and
uses batch statistics when ``train=True``, running averages otherwise. One difference remains: torch
updates the running variance with the unbiased batch variance (factor n / (n - 1), n = B * T * H * W
elements per channel), flax with the biased one; for the n of any real batch the difference is negligible.

Mixed precision: ``dtype=jnp.bfloat16`` computes convolutions in bf16 while parameters stay float32
(``param_dtype``) and BatchNorm statistics are reduced and stored in float32 (flax promotes them).

Convolutions use torch's symmetric explicit padding (not "SAME", which pads stride-2 convolutions
asymmetrically), so converted torchvision weights give torch's outputs (see convert.py).

Parameter counts without classifier: R3D-18 33,166,272 (torchvision r3d_18 minus its 400-way fc);
ResNet-18 with one input channel 11,170,240 (torchvision resnet18 minus fc, first conv 1 channel).

Submodule names mirror torchvision so that the weight converter is a table: ``stem_conv``/``stem_bn``,
``layer{1..4}_{block}`` with ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample_conv``, ``downsample_bn``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = Any
Dtype = Any

# torchvision's ResNets use kaiming_normal(mode="fan_out", nonlinearity="relu") for convolutions.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def batch_norm(train: bool, dtype: Dtype, name: str) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      param_dtype=jnp.float32, name=name)


def check_input(x: Array, module: str, rank: int, channels: int | None, layout: str) -> None:
  """ValueError naming the module, the expected layout and the given shape."""
  if x.ndim != rank or (channels is not None and x.shape[-1] != channels):
    expected = layout if channels is None else f"{layout} with C={channels}"
    raise ValueError(f"{module}: expected input of shape {expected}, got {tuple(x.shape)}")


class Conv3D(nn.Module):
  """A bias-free 3-D convolution with `nn.Conv`'s parameter layout (kernel (kt, kh, kw, Cin, Cout)).

  Two mathematically identical implementations:
    "xla"    one native 3-D convolution (what GPUs and TPUs run fastest: cuDNN has real 3-D kernels);
    "frames" the kt temporal taps are gathered with strided slices and stacked on the channel axis, and one
             2-D convolution over (B * T_out, H, W, kt * Cin) does the rest. XLA:CPU has no fast 3-D
             convolution; this form was 5x faster forward and backward for the tiny R3D-18's layers on the
             2-core CI machine (3x3x3, 8 channels, 32 x 8 x 16 x 16: 24 -> 5 ms forward, 120 -> 23 ms grad).
    "auto"   "frames" on CPU, "xla" elsewhere.
  Both give the same outputs to float32 rounding (tested), so weights and results do not depend on it.
  """
  features: int
  kernel_size: tuple[int, int, int]
  strides: tuple[int, int, int]
  padding: tuple[tuple[int, int], ...]
  dtype: Dtype = jnp.float32
  impl: str = "auto"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kt, kh, kw = self.kernel_size
    kernel = self.param("kernel", conv_init, (kt, kh, kw, x.shape[-1], self.features), jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    impl = self.impl
    if impl == "auto":
      impl = "frames" if jax.default_backend() == "cpu" else "xla"
    if impl == "xla":
      return lax.conv_general_dilated(x, kernel, self.strides, self.padding,
                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
    if impl != "frames":
      raise ValueError(f"Conv3D: impl must be 'auto', 'xla' or 'frames', got {self.impl!r}")
    st, (pt0, pt1) = self.strides[0], self.padding[0]
    b, t, h, w, c = x.shape
    t_out = (t + pt0 + pt1 - kt) // st + 1
    x = jnp.pad(x, ((0, 0), (pt0, pt1), (0, 0), (0, 0), (0, 0)))
    taps = [lax.slice_in_dim(x, dt, dt + st * (t_out - 1) + 1, st, axis=1) for dt in range(kt)]
    stacked = jnp.concatenate(taps, axis=-1).reshape(b * t_out, h, w, kt * c)
    kernel_2d = jnp.transpose(kernel, (1, 2, 0, 3, 4)).reshape(kh, kw, kt * c, self.features)
    y = lax.conv_general_dilated(stacked, kernel_2d, self.strides[1:], self.padding[1:],
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y.reshape(b, t_out, *y.shape[1:])


def conv(features: int, kernel_size: tuple[int, ...], strides: tuple[int, ...], padding, dtype: Dtype,
         name: str, conv3d_impl: str = "auto") -> nn.Module:
  """Bias-free convolution of any rank; 3-D ones go through `Conv3D` (CPU-friendly implementation)."""
  if len(kernel_size) == 3:
    if padding == "VALID":
      padding = ((0, 0),) * 3
    return Conv3D(features, tuple(kernel_size), tuple(strides), tuple(padding), dtype, conv3d_impl, name=name)
  return nn.Conv(features, kernel_size, strides, padding, use_bias=False, dtype=dtype, param_dtype=jnp.float32,
                 kernel_init=conv_init, name=name)


class BasicBlock(nn.Module):
  """Two 3x..x3 convolutions with BatchNorm and a residual (torchvision BasicBlock / video BasicBlock).

  Attributes:
    features: output channels.
    strides: per-spatial-axis stride of the first conv (and of the downsample projection).
    ndim: 1, 2 or 3 spatial dimensions.
  """
  features: int
  strides: tuple[int, ...]
  ndim: int
  dtype: Dtype = jnp.float32
  conv3d_impl: str = "auto"

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    k3 = (3,) * self.ndim
    pad1 = ((1, 1),) * self.ndim
    y = conv(self.features, k3, self.strides, pad1, self.dtype, "conv1", self.conv3d_impl)(x)
    y = nn.relu(batch_norm(train, self.dtype, "bn1")(y))
    y = conv(self.features, k3, (1,) * self.ndim, pad1, self.dtype, "conv2", self.conv3d_impl)(y)
    y = batch_norm(train, self.dtype, "bn2")(y)
    if any(s != 1 for s in self.strides) or x.shape[-1] != self.features:
      x = conv(self.features, (1,) * self.ndim, self.strides, "VALID", self.dtype, "downsample_conv",
               self.conv3d_impl)(x)
      x = batch_norm(train, self.dtype, "downsample_bn")(x)
    return nn.relu(y + x)


class _ResNetStages(nn.Module):
  """The four (or len(widths)) residual stages and the global average pool, shared by 1/2/3-D nets."""
  widths: Sequence[int]
  blocks: Sequence[int]
  ndim: int
  dtype: Dtype

  @property
  def output_dim(self) -> int:
    """Width of the output feature (B, D): the last stage's channels, averaged over positions."""
    return int(self.widths[-1])

  def stages(self, x: Array, train: bool) -> Array:
    for stage, (width, num_blocks) in enumerate(zip(self.widths, self.blocks)):
      for block in range(num_blocks):
        stride = 2 if (stage > 0 and block == 0) else 1
        x = BasicBlock(width, (stride,) * self.ndim, self.ndim, self.dtype,
                       getattr(self, "conv3d_impl", "auto"), name=f"layer{stage + 1}_{block}")(x, train)
    return x


class R3D18(_ResNetStages):
  """R3D-18 video backbone (Tran et al. 2018; torchvision ``r3d_18`` without ``fc``).

  Stem: conv (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3), BN, ReLU, no max-pool. Stages of basic blocks
  with 3x3x3 convolutions; stages 2..4 stride 2 in time and space (torchvision's Conv3DSimple). Global
  average pool over (T, H, W).

  Input (B, T, H, W, 3) float, channels-last; output (B, widths[-1]) float32. T must be >= 3 (temporal
  kernel of the stem); each stride-2 stage halves T rounding up, so any T >= 3 works.
  """
  widths: Sequence[int] = (64, 128, 256, 512)
  blocks: Sequence[int] = (2, 2, 2, 2)
  stem_width: int = 64
  in_channels: int = 3
  ndim: int = 3
  dtype: Dtype = jnp.float32
  conv3d_impl: str = "auto"  # see Conv3D

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    check_input(x, "R3D18", 5, self.in_channels, "(B, T, H, W, C)")
    if x.shape[1] < 3 or x.shape[2] < 7 or x.shape[3] < 7:
      raise ValueError(f"R3D18: clip (B, T, H, W, C) must have T >= 3 (temporal kernel) and H, W >= 7 "
                       f"(stem kernel), got {tuple(x.shape)}")
    x = x.astype(self.dtype)
    x = conv(self.stem_width, (3, 7, 7), (1, 2, 2), ((1, 1), (3, 3), (3, 3)), self.dtype, "stem_conv",
             self.conv3d_impl)(x)
    x = nn.relu(batch_norm(train, self.dtype, "stem_bn")(x))
    x = self.stages(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))


class ResNet2D(_ResNetStages):
  """ResNet-18 (He et al. 2016; torchvision ``resnet18`` without ``fc``) on (B, H, W, C) images.

  Stem: conv 7x7 stride 2 padding 3, BN, ReLU, max-pool 3x3 stride 2 padding 1. Used with one input channel
  on log spectrograms (H = frequency, W = time). Output (B, widths[-1]) float32.
  """
  widths: Sequence[int] = (64, 128, 256, 512)
  blocks: Sequence[int] = (2, 2, 2, 2)
  stem_width: int = 64
  in_channels: int = 1
  ndim: int = 2
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    check_input(x, "ResNet2D", 4, self.in_channels, "(B, H, W, C)")
    x = x.astype(self.dtype)
    x = nn.Conv(self.stem_width, (7, 7), (2, 2), ((3, 3), (3, 3)), use_bias=False, dtype=self.dtype,
                param_dtype=jnp.float32, kernel_init=conv_init, name="stem_conv")(x)
    x = nn.relu(batch_norm(train, self.dtype, "stem_bn")(x))
    x = nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    x = self.stages(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


class CNN1D(nn.Module):
  """Light 1-D CNN on a raw window (B, L, C): per stage conv(k) stride 2 + BN + ReLU, then global mean.

  Output (B, widths[-1]) float32. A cheap alternative to the spectrogram ResNet for physiology.
  """
  widths: Sequence[int] = (32, 64, 128, 256, 512)
  kernel_size: int = 7
  in_channels: int | None = None
  dtype: Dtype = jnp.float32

  @property
  def output_dim(self) -> int:
    """Width of the output feature (B, D): the last stage's channels, averaged over the window."""
    return int(self.widths[-1])

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    check_input(x, "CNN1D", 3, self.in_channels, "(B, L, C)")
    if x.shape[1] < self.kernel_size:
      raise ValueError(f"CNN1D: window length must be >= kernel_size={self.kernel_size}, got input "
                       f"{tuple(x.shape)}")
    x = x.astype(self.dtype)
    pad = self.kernel_size // 2
    for i, width in enumerate(self.widths):
      x = nn.Conv(width, (self.kernel_size,), (2,), ((pad, pad),), use_bias=False, dtype=self.dtype,
                  param_dtype=jnp.float32, kernel_init=conv_init, name=f"conv{i}")(x)
      x = nn.relu(batch_norm(train, self.dtype, f"bn{i}")(x))
    return jnp.mean(x.astype(jnp.float32), axis=1)
