"""Spectrogram front-ends shared by the models (on device, jax.numpy) and the data pipeline (host, NumPy).

Every function takes its array namespace from its input: a NumPy array is processed with NumPy, anything
else (a jax.Array or a tracer inside jit) with jax.numpy. Signals are transformed along their **last** axis
and the outputs follow scipy's layout: ``(..., num_frequencies, num_frames)``.

- :func:`power_spectrogram` equals ``scipy.signal.spectrogram(x, fs, window, nperseg, noverlap, nfft,
  detrend, scaling=..., mode="psd")`` (one-sided, no boundary padding) for real input.
- :func:`log_power_spectrogram` is its natural log with a floor, the physiological front-end.
- :func:`mel_filterbank` (HTK mel scale, triangular filters, optional Slaney area normalisation) and
  :func:`log_mel_spectrogram`, the audio front-end.

Sampling rate: Biovid's physiological signals are sampled at **512 Hz**. The authors' released code computed
the EMG spectrogram with fs = 1000 Hz (and without a log); the frequency axis was therefore mislabelled and
the density scaled by the wrong rate. Callers pass the true rate (the model config's ``fs``).

References:
  scipy.signal.spectrogram / scipy.signal.get_window (conventions matched here).
  S. S. Stevens, J. Volkmann, E. B. Newman, "A scale for the measurement of the psychological magnitude
  pitch", JASA 1937; HTK book (mel = 2595 log10(1 + f / 700)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any


def _namespace(x: Array):
  """NumPy for NumPy input, jax.numpy otherwise (imported lazily so host-only workers stay light)."""
  if isinstance(x, (np.ndarray, np.generic)):
    return np
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return jnp


def hann_window(length: int, periodic: bool = True) -> np.ndarray:
  """Hann window as scipy.signal.get_window("hann", length) (periodic, the spectral-analysis form).

  Args:
    length: number of taps.
    periodic: True for the DFT-even (periodic) window scipy uses for spectra; False for the symmetric one.

  Returns:
    float64 array (length,).
  """
  if length < 1:
    raise ValueError(f"hann_window: length must be >= 1, got {length}")
  if length == 1:
    return np.ones(1)
  denom = length if periodic else length - 1
  n = np.arange(length)
  return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / denom)


def frame_signal(x: Array, frame_length: int, hop_length: int) -> Array:
  """Overlapping frames along the last axis, without padding.

  Args:
    x: (..., L) signal.
    frame_length: samples per frame.
    hop_length: step between frame starts.

  Returns:
    (..., N, frame_length) with N = 1 + (L - frame_length) // hop_length.
  """
  length = x.shape[-1]
  if hop_length < 1:
    raise ValueError(f"frame_signal: hop_length must be >= 1, got {hop_length}")
  if length < frame_length:
    raise ValueError(
        f"frame_signal: signal of length {length} (shape {tuple(x.shape)}) is shorter than one frame "
        f"({frame_length} samples)")
  num_frames = 1 + (length - frame_length) // hop_length
  # A static index table: one gather, identical in NumPy and in XLA.
  index = np.arange(num_frames)[:, None] * hop_length + np.arange(frame_length)[None, :]
  return x[..., index]


def spectrogram_frequencies(fs: float, nfft: int) -> np.ndarray:
  """Centre frequencies (Hz) of the one-sided spectrum, as returned by scipy: (nfft // 2 + 1,)."""
  return np.fft.rfftfreq(nfft, d=1.0 / fs)


def power_spectrogram(x: Array, *, fs: float, nperseg: int, noverlap: int | None = None,
                      nfft: int | None = None, detrend: str | bool = "constant",
                      scaling: str = "density") -> Array:
  """One-sided power spectrogram with a periodic Hann window, equal to scipy.signal.spectrogram.

  Args:
    x: (..., L) real signal, transformed along the last axis.
    fs: sampling rate in Hz (Biovid physiology: 512).
    nperseg: window length in samples.
    noverlap: overlap in samples (default nperseg // 8, as scipy).
    nfft: FFT length >= nperseg (default nperseg); zero-pads each frame.
    detrend: "constant" removes each frame's mean (scipy's default), False keeps it.
    scaling: "density" (V**2/Hz), "spectrum" (V**2) or "power" (plain |FFT(window * frame)|**2, the
      convention of mel spectrograms).

  Returns:
    (..., nfft // 2 + 1, N) in the input's float dtype, N = 1 + (L - nperseg) // (nperseg - noverlap).
  """
  xp = _namespace(x)
  noverlap = nperseg // 8 if noverlap is None else noverlap
  nfft = nperseg if nfft is None else nfft
  if not 0 <= noverlap < nperseg:
    raise ValueError(f"power_spectrogram: need 0 <= noverlap < nperseg, got noverlap={noverlap}, "
                     f"nperseg={nperseg}")
  if nfft < nperseg:
    raise ValueError(f"power_spectrogram: nfft={nfft} must be >= nperseg={nperseg}")
  if detrend not in ("constant", False, None):
    raise ValueError(f"power_spectrogram: detrend must be 'constant' or False, got {detrend!r}")
  frames = frame_signal(x, nperseg, nperseg - noverlap)  # (..., N, nperseg)
  if detrend == "constant":
    frames = frames - xp.mean(frames, axis=-1, keepdims=True)
  window_np = hann_window(nperseg)
  dtype = frames.dtype if xp.issubdtype(frames.dtype, xp.floating) else np.float32
  window = xp.asarray(window_np, dtype=dtype)
  spectrum = xp.fft.rfft(frames * window, n=nfft, axis=-1)
  power = xp.real(spectrum) ** 2 + xp.imag(spectrum) ** 2
  if scaling == "density":
    scale = 1.0 / (fs * float(np.sum(window_np ** 2)))
  elif scaling == "spectrum":
    scale = 1.0 / float(np.sum(window_np)) ** 2
  elif scaling == "power":
    scale = 1.0
  else:
    raise ValueError(f"power_spectrogram: scaling must be 'density', 'spectrum' or 'power', got {scaling!r}")
  if scaling != "power":
    # One-sided spectrum: every bin except DC (and Nyquist for even nfft) carries its negative twin.
    fold = np.full(nfft // 2 + 1, 2.0)
    fold[0] = 1.0
    if nfft % 2 == 0:
      fold[-1] = 1.0
    power = power * xp.asarray(fold * scale, dtype=power.dtype)
  return xp.swapaxes(power.astype(dtype), -1, -2)


def log_power_spectrogram(x: Array, *, fs: float, nperseg: int, noverlap: int | None = None,
                          nfft: int | None = None, detrend: str | bool = "constant",
                          floor: float = 1e-10) -> Array:
  """Natural log of the power spectral density, log(max(P, floor)). Shapes as :func:`power_spectrogram`."""
  xp = _namespace(x)
  power = power_spectrogram(x, fs=fs, nperseg=nperseg, noverlap=noverlap, nfft=nfft, detrend=detrend,
                            scaling="density")
  return xp.log(xp.maximum(power, floor))


def hz_to_mel(f: Array) -> Array:
  """HTK mel scale: 2595 log10(1 + f / 700)."""
  xp = _namespace(f)
  return 2595.0 * xp.log10(1.0 + f / 700.0)


def mel_to_hz(m: Array) -> Array:
  """Inverse of :func:`hz_to_mel`."""
  return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(*, num_mels: int, nfft: int, fs: float, fmin: float = 0.0, fmax: float | None = None,
                   slaney_norm: bool = True) -> np.ndarray:
  """Triangular mel filters over the one-sided FFT bins (a constant; NumPy float32).

  Filter m rises linearly from mel point m to m + 1 and falls to m + 2, with num_mels + 2 points equally
  spaced on the HTK mel scale between fmin and fmax. With ``slaney_norm`` each filter is scaled by
  2 / (f_{m+2} - f_m) so that it has unit area in Hz (bands of equal energy for white noise).

  Returns:
    (nfft // 2 + 1, num_mels); a power spectrum P (..., F, N) maps to mel bands by
    ``einsum("...fn,fm->...mn", P, filters)``.
  """
  fmax = fs / 2.0 if fmax is None else fmax
  if not 0.0 <= fmin < fmax <= fs / 2.0:
    raise ValueError(f"mel_filterbank: need 0 <= fmin < fmax <= fs/2, got fmin={fmin}, fmax={fmax}, fs={fs}")
  if num_mels < 1:
    raise ValueError(f"mel_filterbank: num_mels must be >= 1, got {num_mels}")
  freqs = spectrogram_frequencies(fs, nfft)
  points = mel_to_hz(np.linspace(hz_to_mel(np.float64(fmin)), hz_to_mel(np.float64(fmax)), num_mels + 2))
  lower, centre, upper = points[:-2], points[1:-1], points[2:]
  rising = (freqs[:, None] - lower[None, :]) / (centre - lower)[None, :]
  falling = (upper[None, :] - freqs[:, None]) / (upper - centre)[None, :]
  filters = np.maximum(0.0, np.minimum(rising, falling))
  if slaney_norm:
    filters = filters * (2.0 / (upper - lower))[None, :]
  return filters.astype(np.float32)


def log_mel_spectrogram(x: Array, *, fs: float, nfft: int, hop_length: int, num_mels: int,
                        fmin: float = 0.0, fmax: float | None = None, floor: float = 1e-10) -> Array:
  """Log-mel spectrogram: log(max(mel_filters^T |FFT(hann * frame)|^2, floor)).

  Args:
    x: (..., L) waveform.
    fs: sampling rate in Hz.
    nfft: window and FFT length.
    hop_length: frame step.
    num_mels: number of mel bands.

  Returns:
    (..., num_mels, N), N = 1 + (L - nfft) // hop_length.
  """
  xp = _namespace(x)
  power = power_spectrogram(x, fs=fs, nperseg=nfft, noverlap=nfft - hop_length, detrend=False,
                            scaling="power")
  filters = xp.asarray(mel_filterbank(num_mels=num_mels, nfft=nfft, fs=fs, fmin=fmin, fmax=fmax),
                       dtype=power.dtype)
  mel = xp.einsum("...fn,fm->...mn", power, filters)
  return xp.log(xp.maximum(mel, floor))
