"""Decoding helpers (PyAV, PIL) shared by the Biovid and Aff-Wild2 builders.

Errors are the decoders' own (PIL's OSError / SyntaxError, PyAV's FFmpegError, ValueError here); the builders
call these through `io.BadInputLog.decode`, which names the file and lets skip_bad skip it. Every function
finishes decoding before it returns (no lazily loaded image escapes), so errors surface inside that handler.
"""

from __future__ import annotations

import os

import av
import numpy as np
from PIL import Image


def read_video_frames(path: str | os.PathLike, indices: np.ndarray | None = None,
                      size: tuple[int, int] | None = None) -> tuple[np.ndarray, float]:
  """Decodes a video file; returns (frames uint8 (T, H, W, 3), fps).

  Args:
    path: video file.
    indices: frame indices to keep (None: all); indices past the end raise ValueError.
    size: (height, width) to resize to (bilinear), or None.
  """
  with av.open(os.fspath(path)) as container:
    stream = _video_stream(container, path)
    fps = float(stream.average_rate or stream.guessed_rate or 25.0)
    wanted = None if indices is None else set(int(i) for i in indices)
    last = None if indices is None else max(wanted)
    frames = {}
    for i, frame in enumerate(container.decode(stream)):
      if wanted is None or i in wanted:
        image = frame.to_image()
        if size is not None:
          image = image.resize((size[1], size[0]), Image.BILINEAR)
        frames[i] = np.asarray(image.convert("RGB"))
      if last is not None and i >= last:
        break
  if indices is None:
    return np.stack([frames[i] for i in sorted(frames)]), fps
  missing = sorted(set(int(i) for i in indices) - set(frames))
  if missing:
    raise ValueError(f"{path}: has {len(frames) and max(frames) + 1} decodable frames, frame(s) {missing[:5]} "
                     "requested")
  return np.stack([frames[int(i)] for i in indices]), fps


def _video_stream(container, path):
  if not container.streams.video:
    raise ValueError(f"{path}: no video stream")
  return container.streams.video[0]


def count_video_frames(path: str | os.PathLike) -> int:
  """Number of decodable frames (decodes the stream: container frame counts are unreliable)."""
  with av.open(os.fspath(path)) as container:
    return sum(1 for _ in container.decode(_video_stream(container, path)))


def video_fps(path: str | os.PathLike, default: float) -> float:
  """The average frame rate of the first video stream (`default` when the container does not say)."""
  with av.open(os.fspath(path)) as container:
    return float(_video_stream(container, path).average_rate or default)


def read_image_and_size(path: str | os.PathLike,
                        size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
  """(RGB uint8 (H, W, 3) image resized bilinearly to size=(height, width) if given, original (height, width)).

  The file is fully decoded here (`load()`), so a truncated or corrupt file raises now, not at first use.
  """
  with Image.open(os.fspath(path)) as image:
    image.load()
    original = (image.height, image.width)
    image = image.convert("RGB")
    if size is not None and image.size != (size[1], size[0]):
      image = image.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image), original


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
  """RGB uint8 (H, W, 3) image, resized bilinearly to (height, width) if size is given (fully decoded)."""
  return read_image_and_size(path, size)[0]


def read_audio(path: str | os.PathLike, sample_rate: int) -> np.ndarray:
  """Whole audio track of a media file as mono float32 (N,) in [-1, 1] at `sample_rate` Hz."""
  with av.open(os.fspath(path)) as container:
    if not container.streams.audio:
      raise ValueError(f"{path}: no audio stream")
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks = []
    for frame in container.decode(container.streams.audio[0]):
      for out in resampler.resample(frame):
        chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
      chunks.append(out.to_ndarray().reshape(-1))
  return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
