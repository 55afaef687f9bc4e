"""Privileged-modality backbones with their on-device front-ends.

- :class:`PhysioSpectrogramResNet`: raw window (B, L, C) at fs Hz -> per-channel log power spectrogram
  (pkdot_jax.signal, jax.numpy) -> channels stacked along the frequency axis -> one-channel ResNet-18.
  Stacking keeps the first conv one-channel whatever C is, so a one-channel (EMG) and a multi-signal
  (GSR + ECG + EMG) configuration share the architecture and the torchvision conversion rule.
- :class:`PhysioCNN1D`: the light alternative on the raw window.
- :class:`AudioLogMelResNet`: waveform (B, L) -> log-mel spectrogram -> one-channel ResNet-18.

The spectrogram is computed in float32 whatever the compute dtype (log of small powers in bf16 loses the
dynamic range the log was taken for), then cast by the ResNet.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from pkdot_jax import signal
from pkdot_jax.models.resnet import CNN1D, ResNet2D

Array = Any
Dtype = Any


class PhysioSpectrogramResNet(nn.Module):
  """Log power spectrogram + ResNet-18 (one input channel).

  Input (B, L, C) float raw window, output (B, widths[-1]). The image fed to the ResNet is
  (B, C * F, N, 1) with F = nfft // 2 + 1 frequency rows per channel, N frames.
  """
  fs: float = 512.0
  nperseg: int = 64
  noverlap: int = 32
  widths: Sequence[int] = (64, 128, 256, 512)
  blocks: Sequence[int] = (2, 2, 2, 2)
  stem_width: int = 64
  dtype: Dtype = jnp.float32

  @property
  def output_dim(self) -> int:
    """Width of the output feature (B, D): the ResNet's last stage."""
    return int(self.widths[-1])

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if x.ndim != 3:
      raise ValueError(f"PhysioSpectrogramResNet: expected physio window (B, L, C), got {tuple(x.shape)}")
    if x.shape[1] < self.nperseg:
      raise ValueError(f"PhysioSpectrogramResNet: window (B, L, C) needs L >= nperseg={self.nperseg}, got "
                       f"{tuple(x.shape)}")
    x = jnp.swapaxes(x.astype(jnp.float32), 1, 2)  # (B, C, L): the signal module works on the last axis.
    spec = signal.log_power_spectrogram(x, fs=self.fs, nperseg=self.nperseg, noverlap=self.noverlap)
    b, c, f, n = spec.shape
    image = spec.reshape(b, c * f, n, 1)
    return ResNet2D(self.widths, self.blocks, stem_width=self.stem_width, in_channels=1, dtype=self.dtype,
                    name="resnet")(image, train)


class PhysioCNN1D(nn.Module):
  """1-D CNN on the raw physiological window (B, L, C); output (B, widths[-1])."""
  widths: Sequence[int] = (32, 64, 128, 256, 512)
  kernel_size: int = 7
  dtype: Dtype = jnp.float32

  @property
  def output_dim(self) -> int:
    """Width of the output feature (B, D): the CNN's last stage."""
    return int(self.widths[-1])

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if x.ndim != 3:
      raise ValueError(f"PhysioCNN1D: expected physio window (B, L, C), got {tuple(x.shape)}")
    return CNN1D(self.widths, self.kernel_size, dtype=self.dtype, name="cnn")(x, train)


class AudioLogMelResNet(nn.Module):
  """Log-mel spectrogram + ResNet-18 (one input channel). Input (B, L) waveform, output (B, widths[-1])."""
  fs: float = 16000.0
  nfft: int = 512
  hop_length: int = 160
  num_mels: int = 64
  widths: Sequence[int] = (64, 128, 256, 512)
  blocks: Sequence[int] = (2, 2, 2, 2)
  stem_width: int = 64
  dtype: Dtype = jnp.float32

  @property
  def output_dim(self) -> int:
    """Width of the output feature (B, D): the ResNet's last stage."""
    return int(self.widths[-1])

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    if x.ndim != 2:
      raise ValueError(f"AudioLogMelResNet: expected waveform (B, L), got {tuple(x.shape)}")
    if x.shape[1] < self.nfft:
      raise ValueError(f"AudioLogMelResNet: waveform (B, L) needs L >= nfft={self.nfft}, got "
                       f"{tuple(x.shape)}")
    mel = signal.log_mel_spectrogram(x.astype(jnp.float32), fs=self.fs, nfft=self.nfft,
                                     hop_length=self.hop_length, num_mels=self.num_mels)
    return ResNet2D(self.widths, self.blocks, stem_width=self.stem_width, in_channels=1, dtype=self.dtype,
                    name="resnet")(mel[..., None], train)
