"""Evaluation metrics on host NumPy arrays: classification and valence/arousal regression.

These run once per evaluation over the whole (unpadded) split, so they are NumPy, not jitted: the numbers must
be exact over all test samples (the authors' loader dropped the last incomplete test batch; we never do).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_same_length(**arrays: np.ndarray) -> int:
  lengths = {name: len(a) for name, a in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"metrics: arrays must have the same length, got {lengths}")
  return next(iter(lengths.values()))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """Counts C[i, j] of examples with true class i predicted as class j; shape (num_classes, num_classes)."""
  labels = np.asarray(labels, np.int64)
  predictions = np.asarray(predictions, np.int64)
  _check_same_length(labels=labels, predictions=predictions)
  for name, a in (("labels", labels), ("predictions", predictions)):
    if a.size and (a.min() < 0 or a.max() >= num_classes):
      raise ValueError(f"metrics: {name} must lie in [0, {num_classes}), got range [{a.min()}, {a.max()}]")
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def macro_f1(matrix: np.ndarray) -> float:
  """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN); a class absent from both truth and
  predictions is left out of the mean (its F1 is undefined), as scikit-learn does with `labels` unset."""
  matrix = np.asarray(matrix, np.float64)
  tp = np.diag(matrix)
  fp = matrix.sum(axis=0) - tp
  fn = matrix.sum(axis=1) - tp
  denom = 2 * tp + fp + fn
  present = denom > 0
  if not present.any():
    return float("nan")
  return float(np.mean(2 * tp[present] / denom[present]))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
  """Accuracy, macro-F1 and confusion matrix from logits (N, C) and integer labels (N,)."""
  logits = np.asarray(logits)
  if logits.ndim != 2:
    raise ValueError(f"classification_metrics: logits must be (N, C), got shape {logits.shape}")
  _check_same_length(logits=logits, labels=labels)
  predictions = logits.argmax(axis=-1)
  matrix = confusion_matrix(labels, predictions, logits.shape[-1])
  n = max(len(labels), 1)
  return {
      "accuracy": float(np.trace(matrix) / n),
      "macro_f1": macro_f1(matrix),
      "confusion_matrix": matrix.tolist(),
      "num_examples": int(len(labels)),
  }


def ccc(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """Lin's concordance correlation coefficient per column of (N, K) arrays (population moments).

  CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2).
  """
  x = np.asarray(predictions, np.float64)
  y = np.asarray(targets, np.float64)
  if x.shape != y.shape:
    raise ValueError(f"ccc: predictions {x.shape} and targets {y.shape} differ in shape")
  if x.ndim == 1:
    x, y = x[:, None], y[:, None]
  mx, my = x.mean(0), y.mean(0)
  vx, vy = x.var(0), y.var(0)
  cov = ((x - mx) * (y - my)).mean(0)
  denom = vx + vy + (mx - my) ** 2
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(denom > 0, 2 * cov / np.where(denom > 0, denom, 1.0), np.nan)


def regression_metrics(predictions: np.ndarray, targets: np.ndarray, video_ids: np.ndarray | None = None,
                       names: tuple[str, ...] = ("valence", "arousal")) -> dict[str, Any]:
  """CCC and RMSE per dimension, pooled over all frames/clips, plus the mean of per-video CCCs if ids given.

  Pooled CCC is the ABAW challenge metric; per-video CCC (mean over videos with more than one sample) shows
  whether a model tracks within-video dynamics rather than between-video offsets.
  """
  predictions = np.asarray(predictions, np.float64)
  targets = np.asarray(targets, np.float64)
  if predictions.shape != targets.shape or predictions.ndim != 2 or predictions.shape[1] != len(names):
    raise ValueError(f"regression_metrics: predictions {predictions.shape} and targets {targets.shape} must "
                     f"both be (N, {len(names)})")
  pooled = ccc(predictions, targets)
  rmse = np.sqrt(((predictions - targets) ** 2).mean(0))
  out: dict[str, Any] = {"num_examples": int(len(targets))}
  for i, name in enumerate(names):
    out[f"ccc_{name}"] = float(pooled[i])
    out[f"rmse_{name}"] = float(rmse[i])
  out["ccc_mean"] = float(np.mean(pooled))
  if video_ids is not None:
    video_ids = np.asarray(video_ids)
    _check_same_length(predictions=predictions, video_ids=video_ids)
    per_video = [ccc(predictions[video_ids == v], targets[video_ids == v])
                 for v in np.unique(video_ids) if (video_ids == v).sum() > 1]
    if per_video:
      stacked = np.stack(per_video)
      for i, name in enumerate(names):
        out[f"ccc_{name}_per_video"] = float(np.nanmean(stacked[:, i]))
  return out


def mean_std(values: list[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; 0 for a single value) over folds x seeds."""
  arr = np.asarray(values, np.float64)
  if arr.size == 0:
    return float("nan"), float("nan")
  return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def paired_difference_ci(values: list[float], baseline: list[float], confidence: float = 0.95
                         ) -> tuple[float, float, float]:
  """Mean paired difference (values - baseline) over matched runs (same fold and seed) and its Student-t
  confidence interval. Returns (mean, low, high); with one pair the interval is (nan, nan)."""
  from scipy import stats  # scipy comes with jax

  diff = np.asarray(values, np.float64) - np.asarray(baseline, np.float64)
  mean = float(diff.mean())
  if diff.size < 2:
    return mean, float("nan"), float("nan")
  half = stats.t.ppf(0.5 + confidence / 2, diff.size - 1) * diff.std(ddof=1) / np.sqrt(diff.size)
  return mean, mean - float(half), mean + float(half)
