"""Host transforms: frame sampling, crops, flip, normalisation, spectrograms at the true rate."""

import numpy as np
import pytest

from pkdot_jax.data import transforms


def test_frame_indices():
  assert transforms.frame_indices(75, 5).tolist() == [7, 22, 37, 52, 67]
  rng = np.random.default_rng(0)
  for _ in range(20):
    idx = transforms.frame_indices(75, 5, "tsn", rng)
    assert np.all((idx >= np.arange(5) * 15) & (idx < (np.arange(5) + 1) * 15))
  assert transforms.frame_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
  with pytest.raises(ValueError, match="mode"):
    transforms.frame_indices(4, 2, "random")


def test_video_chain_shapes_and_values():
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (12, 20, 24, 3), dtype=np.uint8)
  example = {"video": video}
  out = transforms.SampleFrames(4)(example, rng)
  assert np.array_equal(out["video"], video[[1, 4, 7, 10]])
  assert transforms.Resize(10, 12)(example, rng)["video"].shape == (12, 10, 12, 3)
  crop = transforms.CenterCrop(10, 10)(example, rng)["video"]
  assert np.array_equal(crop, video[:, 5:15, 7:17])
  flipped = transforms.RandomFlip(p=1.0)(example, rng)["video"]
  assert np.array_equal(flipped, video[:, :, ::-1])
  normed = transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(example, rng)["video"]
  assert normed.dtype == np.float32
  np.testing.assert_allclose(normed, video / 127.5 - 1.0, atol=1e-6)
  with pytest.raises(ValueError, match="crop"):
    transforms.RandomCrop(30, 30)(example, rng)


def test_device_normalisation_matches_the_host_chain():
  from pkdot_jax.data import on_device
  rng = np.random.default_rng(0)
  video = rng.integers(0, 256, (2, 3, 5, 4, 3), dtype=np.uint8)
  host = transforms.Normalize()({"video": video}, rng)["video"]
  device = np.asarray(on_device.normalize_video(video))
  assert device.dtype == np.float32
  np.testing.assert_allclose(device, host, rtol=0, atol=2e-6)
  assert on_device.normalize_video(host) is host  # float clips are taken as normalised already
  chain = transforms.video_transforms(train=True, crop=(4, 4), normalize=False)
  out = chain[-1]({"video": video[0]}, np.random.default_rng(1))["video"]
  assert out.dtype == np.uint8 and not any(isinstance(t, transforms.Normalize) for t in chain)
  with pytest.raises(ValueError, match="Kinetics"):
    transforms.video_transforms(train=False, normalize=False, mean=transforms.IMAGENET_MEAN)


def test_spectrogram_peak_at_true_frequency():
  fs = 512.0
  t = np.arange(1024) / fs
  physio = np.stack([np.sin(2 * np.pi * 100 * t), np.sin(2 * np.pi * 40 * t)], -1).astype(np.float32)
  out = transforms.LogSpectrogram(fs=fs, nperseg=128, noverlap=64)({"physio": physio}, None)
  spec = out["physio_spectrogram"]
  assert spec.shape[:2] == (2, 65) and spec.dtype == np.float32
  freqs = np.arange(65) * fs / 128
  assert freqs[spec[0].mean(-1).argmax()] == 100 and freqs[spec[1].mean(-1).argmax()] == 40
  mel = transforms.LogMel(fs=8000, nfft=256, hop_length=64, num_mels=20)({"audio": np.sin(t * 3000)}, None)
  assert mel["audio_logmel"].shape == (20, 1 + (1024 - 256) // 64)
