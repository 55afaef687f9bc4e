"""Host-side (NumPy) per-example transforms for `pkdot_jax.data.loader.make_loader(transforms=...)`.

Each transform is a picklable callable `(example: dict, rng: np.random.Generator) -> dict` (deterministic ones
ignore rng) and returns a new dict. Video is (T, H, W, 3) channels-last, uint8 until `Normalize`, float32 after.
Spectrograms wrap `pkdot_jax.signal` (the same xp-generic implementation the models use on device), so host
and device front-ends cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pkdot_jax import signal as signal_lib

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's Kinetics-400 video statistics (R3D-18 pretraining).
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def frame_indices(num_available: int, num_frames: int, mode: str = "uniform",
                  rng: np.random.Generator | None = None) -> np.ndarray:
  """`num_frames` ascending frame indices over a clip of `num_available` frames.

  mode "uniform": the centre of each of `num_frames` equal segments (evaluation); "tsn": a random frame inside
  each segment (TSN-style training sampling, Wang et al. 2016). When num_available < num_frames, segments
  repeat frames.
  """
  if num_available < 1:
    raise ValueError(f"num_available must be >= 1, got {num_available}")
  if num_frames < 1:
    raise ValueError(f"num_frames must be >= 1, got {num_frames}")
  edges = np.linspace(0.0, num_available, num_frames + 1)
  if mode == "uniform":
    points = (edges[:-1] + edges[1:]) / 2
  elif mode == "tsn":
    if rng is None:
      raise ValueError("mode='tsn' needs rng")
    points = edges[:-1] + rng.uniform(0.0, 1.0, num_frames) * (edges[1:] - edges[:-1])
  else:
    raise ValueError(f"mode must be 'uniform' or 'tsn', got {mode!r}")
  return np.minimum(points.astype(np.int64), num_available - 1)


@dataclasses.dataclass(frozen=True)
class SampleFrames:
  """Picks `num_frames` of the stored clip (uniform for evaluation, TSN segments for training)."""
  num_frames: int
  mode: str = "uniform"
  key: str = "video"

  def __call__(self, example, rng):
    video = example[self.key]
    idx = frame_indices(video.shape[0], self.num_frames, self.mode, rng)
    return {**example, self.key: video[idx]}


def resize_video(video: np.ndarray, height: int, width: int) -> np.ndarray:
  """(T, H, W, 3) uint8 -> (T, height, width, 3) uint8, bilinear (PIL)."""
  if video.shape[1:3] == (height, width):
    return video
  return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in video])


@dataclasses.dataclass(frozen=True)
class Resize:
  """Bilinear resize of every frame to (height, width)."""
  height: int
  width: int
  key: str = "video"

  def __call__(self, example, rng):
    return {**example, self.key: resize_video(example[self.key], self.height, self.width)}


@dataclasses.dataclass(frozen=True)
class CenterCrop:
  height: int
  width: int
  key: str = "video"

  def __call__(self, example, rng):
    video = example[self.key]
    _check_crop(video, self.height, self.width)
    top = (video.shape[1] - self.height) // 2
    left = (video.shape[2] - self.width) // 2
    return {**example, self.key: video[:, top:top + self.height, left:left + self.width]}


@dataclasses.dataclass(frozen=True)
class RandomCrop:
  """Same random (height, width) window for all frames of the clip."""
  height: int
  width: int
  key: str = "video"

  def __call__(self, example, rng):
    video = example[self.key]
    _check_crop(video, self.height, self.width)
    top = int(rng.integers(0, video.shape[1] - self.height + 1))
    left = int(rng.integers(0, video.shape[2] - self.width + 1))
    return {**example, self.key: video[:, top:top + self.height, left:left + self.width]}


def _check_crop(video, height, width):
  if video.shape[1] < height or video.shape[2] < width:
    raise ValueError(f"crop ({height}, {width}) larger than the frames {video.shape[1:3]} of video {video.shape}")


@dataclasses.dataclass(frozen=True)
class RandomFlip:
  """Horizontal flip of the whole clip with probability p."""
  p: float = 0.5
  key: str = "video"

  def __call__(self, example, rng):
    if rng.uniform() < self.p:
      return {**example, self.key: example[self.key][:, :, ::-1]}
    return example


@dataclasses.dataclass(frozen=True)
class Normalize:
  """uint8 [0, 255] -> float32 (x / 255 - mean) / std per channel."""
  mean: Sequence[float] = KINETICS_MEAN
  std: Sequence[float] = KINETICS_STD
  key: str = "video"

  def __call__(self, example, rng):
    video = example[self.key].astype(np.float32) / 255.0
    mean = np.asarray(self.mean, np.float32)
    std = np.asarray(self.std, np.float32)
    return {**example, self.key: (video - mean) / std}


@dataclasses.dataclass(frozen=True)
class LogSpectrogram:
  """Log power spectrogram of a (L, C) channels-last signal -> float32 (C, F, N) under `out_key`.

  fs must be the true sampling rate (Biovid / synthetic physio: 512 Hz). Wraps
  `pkdot_jax.signal.log_power_spectrogram` (scipy.signal.spectrogram conventions).
  """
  fs: float
  nperseg: int = 128
  noverlap: int | None = 96
  key: str = "physio"
  out_key: str = "physio_spectrogram"

  def __call__(self, example, rng):
    x = np.asarray(example[self.key], np.float32)
    x = x[:, None] if x.ndim == 1 else x
    spec = signal_lib.log_power_spectrogram(np.moveaxis(x, -1, 0), fs=self.fs, nperseg=self.nperseg,
                                            noverlap=self.noverlap)
    return {**example, self.out_key: spec.astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class LogMel:
  """Log-mel spectrogram of a mono (L,) waveform -> float32 (num_mels, N) under `out_key`."""
  fs: float
  nfft: int = 256
  hop_length: int = 64
  num_mels: int = 40
  key: str = "audio"
  out_key: str = "audio_logmel"

  def __call__(self, example, rng):
    x = np.asarray(example[self.key], np.float32)
    spec = signal_lib.log_mel_spectrogram(x, fs=self.fs, nfft=self.nfft, hop_length=self.hop_length,
                                          num_mels=self.num_mels)
    return {**example, self.out_key: spec.astype(np.float32)}


def video_transforms(*, train: bool, num_frames: int | None = None, size: tuple[int, int] | None = None,
                     crop: tuple[int, int] | None = None, flip: bool = True,
                     mean: Sequence[float] = KINETICS_MEAN, std: Sequence[float] = KINETICS_STD,
                     normalize: bool = True) -> list:
  """The standard video chain: [sample frames] -> [resize] -> [random|centre crop] -> [flip] -> [normalise].

  Frame choice, crop and flip are views of the stored clip (the batch's one copy is the collation); with
  `normalize=False` the clips stay uint8 and the model normalises them on the device
  (`pkdot_jax.data.on_device`, Kinetics statistics only), a quarter of the bytes and no host float pass."""
  chain = []
  if num_frames is not None:
    chain.append(SampleFrames(num_frames, "tsn" if train else "uniform"))
  if size is not None:
    chain.append(Resize(*size))
  if crop is not None:
    chain.append(RandomCrop(*crop) if train else CenterCrop(*crop))
  if train and flip:
    chain.append(RandomFlip())
  if normalize:
    chain.append(Normalize(mean, std))
  elif (tuple(mean), tuple(std)) != (KINETICS_MEAN, KINETICS_STD):
    raise ValueError(f"normalize=False leaves normalisation to the model, which uses the Kinetics statistics; "
                     f"got mean={tuple(mean)}, std={tuple(std)}")
  return chain
