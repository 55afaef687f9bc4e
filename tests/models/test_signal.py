"""pkdot_jax.signal against scipy.signal (independent float64 reference) in NumPy and jax.numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal

from pkdot_jax import signal


def _chirp(shape, fs):
  rng = np.random.default_rng(0)
  t = np.arange(shape[-1]) / fs
  tone = np.sin(2 * np.pi * (20 * t + 40 * t ** 2)) + 0.3 * np.cos(2 * np.pi * 90 * t)
  return (tone + 0.1 * rng.standard_normal(shape) + 0.5).astype(np.float64)


@pytest.mark.parametrize("scaling", ["density", "spectrum"])
@pytest.mark.parametrize("nperseg,noverlap,nfft", [(64, 32, None), (50, 10, 64), (31, 0, None)])
def test_power_spectrogram_matches_scipy(scaling, nperseg, noverlap, nfft):
  fs = 512.0
  x = _chirp((2, 3, 700), fs)
  _, _, expected = scipy.signal.spectrogram(x, fs=fs, window="hann", nperseg=nperseg, noverlap=noverlap,
                                            nfft=nfft, detrend="constant", scaling=scaling, mode="psd")
  got_np = signal.power_spectrogram(x, fs=fs, nperseg=nperseg, noverlap=noverlap, nfft=nfft, scaling=scaling)
  assert isinstance(got_np, np.ndarray) and got_np.shape == expected.shape
  np.testing.assert_allclose(got_np, expected, rtol=1e-10, atol=1e-14)
  got_jnp = jax.jit(lambda v: signal.power_spectrogram(v, fs=fs, nperseg=nperseg, noverlap=noverlap,
                                                       nfft=nfft, scaling=scaling))(jnp.asarray(x, jnp.float32))
  assert isinstance(got_jnp, jax.Array)
  np.testing.assert_allclose(np.asarray(got_jnp), expected, rtol=2e-3, atol=1e-6 * expected.max())


def test_no_detrend_and_frequencies():
  fs = 512.0
  x = _chirp((400,), fs)
  f, _, expected = scipy.signal.spectrogram(x, fs=fs, window="hann", nperseg=64, noverlap=16, detrend=False)
  np.testing.assert_allclose(signal.power_spectrogram(x, fs=fs, nperseg=64, noverlap=16, detrend=False),
                             expected, rtol=1e-10)
  np.testing.assert_allclose(signal.spectrogram_frequencies(fs, 64), f)


def test_log_power_uses_sampling_rate():
  """The PSD scales with 1/fs: computing at 1000 Hz (the authors' bug) instead of 512 shifts the log."""
  x = _chirp((1, 1024), 512.0)
  right = signal.log_power_spectrogram(x, fs=512.0, nperseg=64, noverlap=32)
  wrong = signal.log_power_spectrogram(x, fs=1000.0, nperseg=64, noverlap=32)
  _, _, ref = scipy.signal.spectrogram(x, fs=512.0, window="hann", nperseg=64, noverlap=32)
  np.testing.assert_allclose(right, np.log(np.maximum(ref, 1e-10)), rtol=1e-10)
  np.testing.assert_allclose(right - wrong, np.log(1000.0 / 512.0), rtol=1e-6)


def test_hann_matches_scipy():
  for n in (1, 8, 33):
    np.testing.assert_allclose(signal.hann_window(n), scipy.signal.get_window("hann", n), atol=1e-15)


def test_mel_filterbank_geometry():
  fs, nfft, num_mels = 16000.0, 512, 40
  fb = signal.mel_filterbank(num_mels=num_mels, nfft=nfft, fs=fs, slaney_norm=False)
  assert fb.shape == (nfft // 2 + 1, num_mels) and fb.dtype == np.float32
  np.testing.assert_allclose(signal.mel_to_hz(signal.hz_to_mel(np.array([0.0, 700.0, 8000.0]))),
                             [0.0, 700.0, 8000.0], atol=1e-9)
  np.testing.assert_allclose(signal.hz_to_mel(np.array(1000.0)), 1000.0, rtol=2e-3)  # HTK anchor
  freqs = signal.spectrogram_frequencies(fs, nfft)
  centres = signal.mel_to_hz(np.linspace(signal.hz_to_mel(0.0), signal.hz_to_mel(fs / 2), num_mels + 2))[1:-1]
  # Each filter peaks at the FFT bin closest to its centre; peaks increase monotonically.
  peaks = fb.argmax(axis=0)
  assert np.all(np.abs(freqs[peaks] - centres) <= fs / nfft)
  assert np.all(np.diff(peaks) >= 0)
  # Unnormalised triangles overlap into a partition of unity between the first and the last centre.
  inner = (freqs >= centres[0]) & (freqs <= centres[-1])
  np.testing.assert_allclose(fb[inner].sum(axis=1), 1.0, atol=1e-5)
  # Slaney normalisation gives unit area in Hz (trapezoid over a fine grid ~ the discrete sum * df).
  fine = signal.mel_filterbank(num_mels=8, nfft=16384, fs=fs, slaney_norm=True)
  np.testing.assert_allclose(fine.sum(axis=0) * fs / 16384, 1.0, rtol=2e-2)


def test_log_mel_of_a_tone_peaks_at_its_band():
  fs, nfft, hop, num_mels = 16000.0, 512, 160, 32
  t = np.arange(4000) / fs
  x = np.sin(2 * np.pi * 1500.0 * t)
  got = signal.log_mel_spectrogram(x, fs=fs, nfft=nfft, hop_length=hop, num_mels=num_mels)
  assert got.shape == (num_mels, 1 + (4000 - nfft) // hop)
  fb = signal.mel_filterbank(num_mels=num_mels, nfft=nfft, fs=fs)
  bin_1500 = int(round(1500.0 * nfft / fs))
  assert np.all(got.argmax(axis=0) == fb[bin_1500].argmax())
  # Reference through scipy's spectrum: |FFT(hann * frame)|^2 = scipy 'spectrum' * sum(w)^2 / fold.
  _, _, spec = scipy.signal.spectrogram(x, fs=fs, window="hann", nperseg=nfft, noverlap=nfft - hop,
                                        detrend=False, scaling="spectrum")
  w = scipy.signal.get_window("hann", nfft)
  fold = np.full(nfft // 2 + 1, 2.0)
  fold[[0, -1]] = 1.0
  power = spec * w.sum() ** 2 / fold[:, None]
  np.testing.assert_allclose(got, np.log(np.maximum(fb.T.astype(np.float64) @ power, 1e-10)), rtol=1e-5,
                             atol=1e-5)
  got_jnp = signal.log_mel_spectrogram(jnp.asarray(x, jnp.float32), fs=fs, nfft=nfft, hop_length=hop,
                                       num_mels=num_mels)
  np.testing.assert_allclose(np.asarray(got_jnp), got, atol=2e-3)


def test_bad_arguments():
  with pytest.raises(ValueError, match="shorter than one frame"):
    signal.power_spectrogram(np.zeros(10), fs=512.0, nperseg=64, noverlap=32)
  with pytest.raises(ValueError, match="noverlap"):
    signal.power_spectrogram(np.zeros(100), fs=512.0, nperseg=64, noverlap=64)
  with pytest.raises(ValueError, match="fmax"):
    signal.mel_filterbank(num_mels=8, nfft=64, fs=1000.0, fmax=600.0)
