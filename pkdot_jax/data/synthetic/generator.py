"""NumPy generator of the synthetic privileged-information dataset (no TensorFlow, no download).

The tfds builder in `builder.py` only wraps this module; keeping the generative process here lets tests and the
usefulness check (`usefulness.py`) draw examples without going through tfds.

Generative process (per subject s, per sample j; everything seeded by `SeedSequence([seed, s])` so a subject's
examples do not depend on how many other subjects exist or on generation order):

1. Label and latent. Each subject gets `samples_per_subject` samples, split equally between the classes and in
   a seeded random order. The latent pain intensity is `p = (level + u) / 5` with `u ~ U(0, 1)`, where the
   level is the class (five_class: levels 0..4, like Biovid BL1, PA1..PA4) or, for the binary config, level 0
   or 4 (BL1 vs PA4). Hence `label = level` is an ordinal function of the latent. Valence/arousal targets:
   `arousal = tanh(1.5 (2p - 1) + 0.5 n_a)`, `valence = tanh(-(2p - 1) + 0.8 n_v)` with n ~ N(0, 1), in (-1, 1).
2. Video (T x H x W x 3 uint8, the *weak* modality). A cartoon face: subject-specific background and skin
   colours, face position and size, and a fixed low-frequency skin texture. Within a clip the head moves
   (Gaussian random walk with a subject-specific amplitude), the global brightness changes and talking-like
   mouth motion that is independent of the latent is added. The pain expression is a temporal bump with a random
   onset whose height is `e = baseline_s + expressivity_s * p * video_gain`: the eyes narrow and the mouth
   opens with `e`. `baseline_s` (N(0, 0.15)) and `expressivity_s` (log-normal, sigma 0.5) are subject-specific,
   so video alone separates the classes only moderately, and worse across subjects than within them. Pixel
   noise N(0, `video_noise`) on top.
3. Physio (L x 2 float32 at `physio_fs` = 512 Hz, the *strong* privileged modality). Channel 0 is EMG-like:
   white noise plus 2-4 Gaussian-windowed bursts whose amplitude grows with p (0.15 + 1.6 p, times a mild
   subject gain) and whose carrier frequency is 30 + 90 p Hz, visible in a spectrogram and to a 1-D CNN.
   Channel 1 is ECG/EDA-like: Gaussian heart beats at 60 + 30 (arousal + 1) / 2 + subject offset beats/min on
   a skin-conductance drift whose slope grows with p, plus noise.
4. Audio (L float32 at `audio_fs` = 8 kHz, a second privileged modality). A voiced harmonic tone with
   f0 = 110 + 90 (arousal + 1) / 2 + subject offset Hz, loudness 0.1 + 0.6 p, and a spectral tilt set by valence
   (brighter for positive valence), plus noise.

`video_id` equals `index` (each synthetic clip is its own "video").
"""

from __future__ import annotations

import dataclasses

import numpy as np

PHYSIO_CHANNELS = ("emg", "ecg_eda")


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
  """Sizes and difficulty knobs of the synthetic dataset (all shapes are per example).

  Attributes:
    num_classes: 2 (binary: intensity levels 0 vs 4) or 5 (levels 0..4).
    num_subjects: number of subjects; subject ids are 0..num_subjects-1.
    samples_per_subject: examples per subject; must be a multiple of num_classes (balanced classes).
    num_frames, height, width: video clip shape (T, H, W, 3), uint8.
    physio_length: L, samples of the physio window at `physio_fs` Hz; physio is float32 (L, 2).
    physio_fs: sampling rate of physio in Hz.
    audio_length: samples of the mono audio window at `audio_fs` Hz; audio is float32 (L,).
    audio_fs: sampling rate of audio in Hz.
    video_gain: strength of the latent in the video (weak by design).
    video_noise: std of the pixel noise (in uint8 units).
    physio_noise: multiplier of the physio noise and nuisance (larger -> weaker privileged signal).
    audio_noise: multiplier of the audio noise (larger -> weaker audio signal).
  """
  num_classes: int = 2
  num_subjects: int = 20
  samples_per_subject: int = 30
  num_frames: int = 8
  height: int = 32
  width: int = 32
  physio_length: int = 1024
  physio_fs: int = 512
  audio_length: int = 2048
  audio_fs: int = 8000
  video_gain: float = 0.7
  video_noise: float = 12.0
  physio_noise: float = 1.0
  audio_noise: float = 1.0

  def validate(self) -> None:
    if self.num_classes not in (2, 5):
      raise ValueError(f"num_classes must be 2 or 5, got {self.num_classes}")
    if self.num_subjects < 1:
      raise ValueError(f"num_subjects must be >= 1, got {self.num_subjects}")
    if self.samples_per_subject < self.num_classes or self.samples_per_subject % self.num_classes:
      raise ValueError(
          f"samples_per_subject ({self.samples_per_subject}) must be a positive multiple of num_classes "
          f"({self.num_classes}) so that classes are balanced per subject")
    if self.num_frames < 1 or self.height < 8 or self.width < 8:
      raise ValueError(f"video shape (T={self.num_frames}, H={self.height}, W={self.width}) needs T >= 1, H, W >= 8")
    if self.physio_length < 64 or self.audio_length < 64:
      raise ValueError(
          f"physio_length ({self.physio_length}) and audio_length ({self.audio_length}) must be >= 64")

  @property
  def num_examples(self) -> int:
    return self.num_subjects * self.samples_per_subject


def _levels(spec: SyntheticSpec) -> np.ndarray:
  return np.array([0, 4]) if spec.num_classes == 2 else np.arange(5)


def generate_subject(spec: SyntheticSpec, seed: int, subject: int) -> dict[str, np.ndarray]:
  """All examples of one subject, stacked on a leading axis N = samples_per_subject.

  Returns:
    dict with "video" uint8 (N, T, H, W, 3), "physio" float32 (N, L, 2), "audio" float32 (N, La),
    "label" int32 (N,), "intensity" float32 (N,) (the latent p in [0, 1)), "valence_arousal" float32 (N, 2),
    "subject" int32 (N,).
  """
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(subject)]))
  n = spec.samples_per_subject
  label = np.repeat(np.arange(spec.num_classes), n // spec.num_classes)
  label = rng.permutation(label).astype(np.int32)
  level = _levels(spec)[label]
  intensity = (level + rng.uniform(0.0, 1.0, n)) / 5.0
  centred = 2.0 * intensity - 1.0
  arousal = np.tanh(1.5 * centred + 0.5 * rng.normal(size=n))
  valence = np.tanh(-1.0 * centred + 0.8 * rng.normal(size=n))
  video = _video(spec, rng, intensity)
  physio = _physio(spec, rng, intensity, arousal)
  audio = _audio(spec, rng, intensity, arousal, valence)
  return {
      "video": video,
      "physio": physio,
      "audio": audio,
      "label": label,
      "intensity": intensity.astype(np.float32),
      "valence_arousal": np.stack([valence, arousal], axis=-1).astype(np.float32),
      "subject": np.full(n, subject, np.int32),
  }


def _ellipse(yy, xx, cy, cx, ry, rx, sharp=1.5):
  """Soft ellipse mask in [0, 1]; arguments broadcast (N, T, 1, 1) against the (H, W) grid."""
  d = ((yy - cy) / np.maximum(ry, 1e-3)) ** 2 + ((xx - cx) / np.maximum(rx, 1e-3)) ** 2
  return 1.0 / (1.0 + np.exp(np.minimum(sharp * 4.0 * (d - 1.0), 50.0)))


def _video(spec: SyntheticSpec, rng: np.random.Generator, intensity: np.ndarray) -> np.ndarray:
  n, t, h, w = spec.samples_per_subject, spec.num_frames, spec.height, spec.width
  scale = min(h, w)
  # Subject-specific appearance (nuisance shared by all clips of the subject).
  background = rng.uniform(20, 235, 3)
  skin = rng.uniform(90, 230, 3)
  face_cy, face_cx = h * rng.uniform(0.42, 0.58), w * rng.uniform(0.42, 0.58)
  face_r = scale * rng.uniform(0.28, 0.36)
  coarse = rng.normal(0.0, 12.0, (4, 4, 3))
  texture = np.kron(coarse, np.ones((int(np.ceil(h / 4)), int(np.ceil(w / 4)), 1)))[:h, :w]
  motion_amp = scale * rng.uniform(0.005, 0.03)
  expressivity = rng.lognormal(0.0, 0.5)
  baseline = rng.normal(0.0, 0.15)
  # Per-clip, per-frame state, shape (N, T).
  drift_y = np.cumsum(rng.normal(0.0, motion_amp, (n, t)), axis=1) + rng.normal(0, scale * 0.03, (n, 1))
  drift_x = np.cumsum(rng.normal(0.0, motion_amp, (n, t)), axis=1) + rng.normal(0, scale * 0.03, (n, 1))
  brightness = rng.normal(1.0, 0.08, (n, 1)) + rng.normal(0.0, 0.02, (n, t))
  onset = rng.uniform(-0.3, 0.6, (n, 1))
  frames_pos = np.linspace(0.0, 1.0, t)[None, :]
  bump = np.exp(-0.5 * ((frames_pos - onset - 0.25) / 0.3) ** 2)
  expression = np.clip(baseline + expressivity * spec.video_gain * intensity[:, None] * bump, -0.3, 1.5)
  talking = 0.35 * np.abs(np.sin(2 * np.pi * (rng.uniform(0.5, 2.0, (n, 1)) * frames_pos
                                              + rng.uniform(0, 1, (n, 1))))) * (rng.uniform(size=(n, 1)) < 0.5)

  yy = np.arange(h, dtype=np.float64)[None, None, :, None]
  xx = np.arange(w, dtype=np.float64)[None, None, None, :]
  cy = (face_cy + drift_y)[..., None, None]
  cx = (face_cx + drift_x)[..., None, None]
  e = expression[..., None, None]
  face = _ellipse(yy, xx, cy, cx, face_r * 1.15, face_r)
  eye_dy, eye_dx = -0.3 * face_r, 0.42 * face_r
  eye_ry = face_r * (0.16 * (1.0 - 0.65 * np.clip(e, 0, 1.2)) + 0.02)
  eyes = (_ellipse(yy, xx, cy + eye_dy, cx - eye_dx, eye_ry, 0.2 * face_r)
          + _ellipse(yy, xx, cy + eye_dy, cx + eye_dx, eye_ry, 0.2 * face_r))
  brow_y = cy + eye_dy - face_r * (0.32 - 0.12 * np.clip(e, 0, 1.2))
  brows = (_ellipse(yy, xx, brow_y, cx - eye_dx, 0.05 * face_r + 0.4, 0.26 * face_r)
           + _ellipse(yy, xx, brow_y, cx + eye_dx, 0.05 * face_r + 0.4, 0.26 * face_r))
  mouth_ry = face_r * (0.05 + 0.22 * np.clip(e, 0, 1.5) + 0.15 * talking[..., None, None]) + 0.3
  mouth = _ellipse(yy, xx, cy + 0.5 * face_r, cx, mouth_ry, 0.38 * face_r)

  feature_dark = np.clip(eyes + brows + mouth, 0.0, 1.0)[..., None]
  face = face[..., None]
  img = background * (1.0 - face) + (skin + texture) * face
  img = img * (1.0 - 0.75 * feature_dark * face)
  img = img * brightness[..., None, None, None]
  img = img + rng.normal(0.0, spec.video_noise, img.shape)
  return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _physio(spec: SyntheticSpec, rng: np.random.Generator, intensity: np.ndarray,
            arousal: np.ndarray) -> np.ndarray:
  n, length, fs = spec.samples_per_subject, spec.physio_length, float(spec.physio_fs)
  time = np.arange(length) / fs
  duration = length / fs
  gain = rng.lognormal(0.0, 0.4)
  noise_level = rng.uniform(0.3, 0.6) * spec.physio_noise
  hr_offset = rng.normal(0.0, 6.0)
  # EMG-like: bursts whose amplitude and carrier frequency grow with the intensity.
  emg = rng.normal(0.0, noise_level, (n, length))
  num_bursts = rng.integers(2, 5, n)
  for i in range(n):
    centres = rng.uniform(0.1, 0.9, num_bursts[i]) * duration
    widths = rng.uniform(0.04, 0.1, num_bursts[i]) * duration
    envelope = np.exp(-0.5 * ((time[None, :] - centres[:, None]) / widths[:, None]) ** 2).sum(0)
    carrier_hz = 30.0 + 90.0 * intensity[i] + rng.normal(0.0, 15.0 * spec.physio_noise)
    carrier = np.sin(2 * np.pi * carrier_hz * time + rng.uniform(0, 2 * np.pi))
    emg[i] += gain * (0.15 + 1.6 * intensity[i]) * envelope * carrier
  # ECG/EDA-like: heart beats at an arousal-dependent rate on a skin-conductance drift.
  hr_hz = (60.0 + 30.0 * (arousal + 1.0) / 2.0 + hr_offset) / 60.0
  phase = (hr_hz[:, None] * time[None, :] + rng.uniform(0, 1, (n, 1))) % 1.0
  beats = np.exp(-0.5 * ((phase - 0.5) / 0.02) ** 2)
  slope = (0.2 + 1.2 * intensity + rng.normal(0.0, 0.4 * spec.physio_noise, n)) * rng.lognormal(0.0, 0.3)
  drift = slope[:, None] * time[None, :] / duration + rng.normal(0, 0.3, (n, 1))
  ecg_eda = beats + drift + rng.normal(0.0, 0.1 * spec.physio_noise, (n, length))
  return np.stack([emg, ecg_eda], axis=-1).astype(np.float32)


def _audio(spec: SyntheticSpec, rng: np.random.Generator, intensity: np.ndarray, arousal: np.ndarray,
           valence: np.ndarray) -> np.ndarray:
  n, length, fs = spec.samples_per_subject, spec.audio_length, float(spec.audio_fs)
  time = np.arange(length) / fs
  f0_offset = rng.normal(0.0, 15.0)
  f0 = 110.0 + 90.0 * (arousal + 1.0) / 2.0 + f0_offset + rng.normal(0.0, 5.0, n)
  harmonics = np.arange(1, 9)
  # Spectral tilt: harmonic amplitudes decay slower (brighter voice) for positive valence.
  tilt = 1.2 - 0.6 * valence
  amps = harmonics[None, :] ** (-tilt[:, None])
  phases = rng.uniform(0, 2 * np.pi, (n, harmonics.size))
  freqs = np.minimum(f0[:, None] * harmonics[None, :], fs / 2 - 1)
  voiced = np.einsum("nk,nkl->nl", amps, np.sin(2 * np.pi * freqs[..., None] * time + phases[..., None]))
  loudness = (0.1 + 0.6 * intensity) * rng.lognormal(0.0, 0.3) * rng.lognormal(0.0, 0.3 * spec.audio_noise, n)
  envelope = 0.5 + 0.5 * np.sin(np.pi * np.clip(time / time[-1], 0, 1))[None, :]
  audio = loudness[:, None] * envelope * voiced + rng.normal(0.0, 0.15 * spec.audio_noise, (n, length))
  return audio.astype(np.float32)


def generate(spec: SyntheticSpec, seed: int):
  """Yields (index, example) over all subjects in subject order; example fields as in the builder."""
  spec.validate()
  index = 0
  for subject in range(spec.num_subjects):
    arrays = generate_subject(spec, seed, subject)
    for j in range(spec.samples_per_subject):
      example = {key: value[j] for key, value in arrays.items()}
      example["index"] = np.int32(index)
      example["video_id"] = np.int32(index)
      yield index, example
      index += 1


def generate_arrays(spec: SyntheticSpec, seed: int) -> dict[str, np.ndarray]:
  """The whole dataset as stacked arrays (for analysis and tests; the builder streams `generate`)."""
  spec.validate()
  parts = [generate_subject(spec, seed, s) for s in range(spec.num_subjects)]
  out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
  out["index"] = np.arange(spec.num_examples, dtype=np.int32)
  out["video_id"] = out["index"].copy()
  return out
