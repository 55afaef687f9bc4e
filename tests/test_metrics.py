"""Metrics against direct computations written out here."""

import numpy as np
import pytest

from pkdot_jax import metrics


def test_confusion_and_macro_f1_by_hand():
  labels = np.array([0, 0, 1, 1, 1, 2])
  logits = np.eye(3)[[0, 1, 1, 1, 0, 2]]
  out = metrics.classification_metrics(logits, labels)
  assert out["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
  assert out["accuracy"] == pytest.approx(4 / 6)
  # Per class F1: class 0: P=1/2, R=1/2 -> 1/2; class 1: P=2/3, R=2/3 -> 2/3; class 2: 1.
  assert out["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_macro_f1_ignores_classes_absent_everywhere():
  matrix = np.array([[3, 0, 0], [1, 2, 0], [0, 0, 0]])
  f1_0 = 2 * 3 / (2 * 3 + 1 + 0)
  f1_1 = 2 * 2 / (2 * 2 + 0 + 1)
  assert metrics.macro_f1(matrix) == pytest.approx((f1_0 + f1_1) / 2)


def test_ccc_matches_formula_and_properties():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 2))
  y = 0.7 * x + rng.normal(scale=0.3, size=(50, 2)) + 0.2
  value = metrics.ccc(x, y)
  for d in range(2):
    a, b = x[:, d], y[:, d]
    expected = 2 * np.cov(a, b, bias=True)[0, 1] / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    assert value[d] == pytest.approx(expected)
  np.testing.assert_allclose(metrics.ccc(x, x), 1.0)
  assert np.all(metrics.ccc(x, x + 1.0) < 1.0)  # a bias is penalised, unlike Pearson's r
  centred = x - x.mean(0)
  np.testing.assert_allclose(metrics.ccc(centred, -centred), -1.0)


def test_regression_metrics_pooled_and_per_video():
  rng = np.random.default_rng(1)
  targets = rng.uniform(-1, 1, size=(40, 2))
  predictions = targets + rng.normal(scale=0.1, size=(40, 2))
  video = np.repeat(np.arange(4), 10)
  out = metrics.regression_metrics(predictions, targets, video)
  assert out["ccc_valence"] == pytest.approx(metrics.ccc(predictions[:, 0], targets[:, 0])[0])
  assert out["rmse_arousal"] == pytest.approx(np.sqrt(np.mean((predictions[:, 1] - targets[:, 1]) ** 2)))
  per_video = np.mean([metrics.ccc(predictions[video == v, 0], targets[video == v, 0])[0] for v in range(4)])
  assert out["ccc_valence_per_video"] == pytest.approx(per_video)
  with pytest.raises(ValueError, match=r"\(N, 2\)"):
    metrics.regression_metrics(predictions[:, :1], targets[:, :1])


def test_paired_difference_interval():
  base = [0.60, 0.62, 0.58, 0.61]
  values = [0.65, 0.66, 0.61, 0.67]
  mean, low, high = metrics.paired_difference_ci(values, base)
  diff = np.subtract(values, base)
  assert mean == pytest.approx(diff.mean())
  # t(0.975, 3) = 3.182446
  half = 3.182446 * diff.std(ddof=1) / 2
  assert low == pytest.approx(mean - half, rel=1e-5) and high == pytest.approx(mean + half, rel=1e-5)
  assert metrics.mean_std([1.0]) == (1.0, 0.0)


def test_bad_labels_named():
  with pytest.raises(ValueError, match="labels"):
    metrics.confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
