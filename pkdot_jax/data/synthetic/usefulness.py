"""Quick check that the privileged modalities of the synthetic set are genuinely useful.

Linear probes (ridge-regression classifiers on fixed hand-made features, standardised on the training subjects)
under subject-disjoint k-fold cross-validation: video alone, physio alone, audio alone, video + physio,
video + audio. The privileged pairs must clearly beat video alone, and video alone must be above chance so that
distillation has something to improve. Run:

  python -m pkdot_jax.data.synthetic.usefulness --config binary --seed 0
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from pkdot_jax.data import folds as folds_lib
from pkdot_jax.data.synthetic import generator


def video_features(video: np.ndarray) -> np.ndarray:
  """(N, T, H, W, 3) uint8 -> (N, F): 8x8-pooled grey frames, temporal mean / std / range."""
  n, t, h, w, _ = video.shape
  grey = video.astype(np.float32).mean(-1)
  ph, pw = h // 8, w // 8
  pooled = grey[:, :, : ph * 8, : pw * 8].reshape(n, t, 8, ph, 8, pw).mean((3, 5)).reshape(n, t, 64)
  return np.concatenate([pooled.mean(1), pooled.std(1), pooled.max(1) - pooled.min(1)], axis=1)


def signal_features(signal: np.ndarray, num_bands: int = 24) -> np.ndarray:
  """(N, L) or (N, L, C) float -> (N, F): log band powers of each channel plus mean and linear slope."""
  if signal.ndim == 2:
    signal = signal[..., None]
  n, length, channels = signal.shape
  feats = []
  ramp = np.linspace(-1.0, 1.0, length)
  for c in range(channels):
    x = signal[:, :, c].astype(np.float64)
    power = np.abs(np.fft.rfft(x - x.mean(1, keepdims=True), axis=1)) ** 2
    bands = np.array_split(power, num_bands, axis=1)
    feats.append(np.log(np.stack([b.mean(1) for b in bands], 1) + 1e-8))
    feats.append(x.mean(1, keepdims=True))
    feats.append((x * ramp).mean(1, keepdims=True))
  return np.concatenate(feats, axis=1)


def _ridge_accuracy(features, labels, num_classes, train, test, l2=100.0):
  mu, sd = features[train].mean(0), features[train].std(0) + 1e-6
  x_train = np.c_[(features[train] - mu) / sd, np.ones(len(train))]
  x_test = np.c_[(features[test] - mu) / sd, np.ones(len(test))]
  y = np.eye(num_classes)[labels[train]] * 2.0 - 1.0
  weights = np.linalg.solve(x_train.T @ x_train + l2 * np.eye(x_train.shape[1]), x_train.T @ y)
  return float(np.mean(np.argmax(x_test @ weights, 1) == labels[test]))


def evaluate(spec: generator.SyntheticSpec, seed: int = 0, num_folds: int = 5) -> dict[str, float]:
  """Mean subject-disjoint test accuracy of each feature set; returns {name: accuracy, "chance": ...}."""
  data = generator.generate_arrays(spec, seed)
  video = video_features(data["video"])
  physio = signal_features(data["physio"])
  audio = signal_features(data["audio"])
  sets = {"video": video, "physio": physio, "audio": audio,
          "video+physio": np.c_[video, physio], "video+audio": np.c_[video, audio]}
  results = {name: [] for name in sets}
  for train, _, test in folds_lib.subject_folds(data["subject"], num_folds, 0.0, seed):
    for name, feats in sets.items():
      results[name].append(_ridge_accuracy(feats, data["label"], spec.num_classes, train, test))
  out = {name: round(float(np.mean(acc)), 4) for name, acc in results.items()}
  out["chance"] = round(1.0 / spec.num_classes, 4)
  return out


def video_probe_by_fold(spec: generator.SyntheticSpec, seed: int, num_folds: int, val_fraction: float,
                        fold_seed: int, folds: list[int] | None = None, l2: float = 100.0) -> dict[int, float]:
  """The video ceiling of a training run: test accuracy of the ridge probe on the video features, fitted on
  the same training subjects (validation subjects left out, as the students) of the same subject-disjoint
  folds as `config.data.protocol="subject"` (folds.subject_folds with the run's num_folds, val_fraction and
  fold_seed on the record-order subject ids). Returns {fold: accuracy}."""
  data = generator.generate_arrays(spec, seed)
  features = video_features(data["video"])
  splits = folds_lib.subject_folds(data["subject"], num_folds, val_fraction, fold_seed)
  return {k: _ridge_accuracy(features, data["label"], spec.num_classes, splits[k][0], splits[k][2], l2)
          for k in (range(num_folds) if folds is None else folds)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="binary", choices=["binary", "five_class"])
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_folds", type=int, default=5)
  args = parser.parse_args()
  spec = generator.SyntheticSpec(num_classes=2 if args.config == "binary" else 5)
  print(json.dumps({"config": args.config, "seed": args.seed, **evaluate(spec, args.seed, args.num_folds)}))


if __name__ == "__main__":
  main()
