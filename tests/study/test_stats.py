"""The demo's statistics against independent computations: the fold-aware interval (a t-test over per-fold
means of seed differences, as scipy computes it on those means) and Holm's correction (a direct loop over the
definition, and statsmodels' values where it is installed)."""

import numpy as np
import pytest
from scipy import stats as scipy_stats

from pkdot_jax.study import stats


def _rows(method, values):
  return [{"method": method, "fold": f, "seed": s, "acc": v} for (f, s), v in values.items()]


def test_fold_interval_is_a_t_interval_over_per_fold_means_of_seed_differences():
  rng = np.random.default_rng(0)
  folds, seeds = 7, 3
  control = {(f, s): 0.6 + 0.05 * rng.standard_normal() for f in range(folds) for s in range(seeds)}
  method = {k: v + 0.02 + 0.03 * rng.standard_normal() + 0.01 * k[0] for k, v in control.items()}
  rows = _rows("m", method) + _rows("c", control)
  result = stats.compare(rows, "method", "c", "acc", ["m"])["m"]
  per_fold = np.array([np.mean([method[(f, s)] - control[(f, s)] for s in range(seeds)]) for f in range(folds)])
  test = scipy_stats.ttest_1samp(per_fold, 0.0)
  ci = test.confidence_interval(0.95)
  assert result["diff"] == pytest.approx(per_fold.mean())
  assert result["diff_low"] == pytest.approx(ci.low) and result["diff_high"] == pytest.approx(ci.high)
  assert result["p"] == pytest.approx(test.pvalue)
  assert result["folds"] == folds and result["pairs"] == folds * seeds
  # Not the naive interval over the 21 pairs, which treats seeds of one fold as independent.
  naive = scipy_stats.ttest_1samp(np.array([method[k] - control[k] for k in control]), 0.0)
  assert result["p"] != pytest.approx(naive.pvalue)


def test_pairs_are_matched_by_fold_and_seed():
  control = {(0, 0): 0.5, (0, 1): 0.6, (1, 0): 0.7, (1, 1): 0.8, (2, 0): 0.5}
  method = {(0, 0): 0.6, (0, 1): 0.6, (1, 0): 0.9, (1, 1): 0.8, (2, 1): 0.9}  # (2, 1) has no control
  diffs = stats.fold_differences(_rows("m", method), _rows("c", control), "acc")
  assert diffs == pytest.approx({0: 0.05, 1: 0.1})


def _holm_reference(p):
  order = np.argsort(p)
  m = len(p)
  adjusted = np.empty(m)
  running = 0.0
  for rank, i in enumerate(order):
    running = max(running, min(1.0, (m - rank) * p[i]))
    adjusted[i] = running
  return adjusted


def test_holm_matches_the_step_down_definition():
  rng = np.random.default_rng(1)
  for _ in range(20):
    p = rng.uniform(0, 0.2, size=6)
    got = stats.holm({f"m{i}": v for i, v in enumerate(p)})
    assert [got[f"m{i}"] for i in range(6)] == pytest.approx(_holm_reference(p).tolist())
  got = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
  assert got["a"] == pytest.approx(0.03) and got["c"] == pytest.approx(0.06) and got["b"] == pytest.approx(0.06)
  assert np.isnan(got["d"])


def test_holm_matches_statsmodels_where_installed():
  multitest = pytest.importorskip("statsmodels.stats.multitest")
  p = [0.001, 0.02, 0.03, 0.2, 0.04]
  expected = multitest.multipletests(p, method="holm")[1]
  got = stats.holm({str(i): v for i, v in enumerate(p)})
  assert [got[str(i)] for i in range(len(p))] == pytest.approx(list(expected))


def test_detectable_effect_has_the_requested_power():
  """Simulated t-tests over F per-fold differences with sd 1 and true mean = the detectable effect reject
  about `power` of the time."""
  folds, alpha = 10, 0.05
  effect = stats.detectable_effect(1.0, folds, alpha=alpha, power=0.8)
  rng = np.random.default_rng(2)
  samples = effect + rng.standard_normal((4000, folds))
  rejected = scipy_stats.ttest_1samp(samples, 0.0, axis=1).pvalue < alpha
  assert 0.75 < rejected.mean() < 0.85


def test_full_comparison_keeps_the_weight_best_on_validation():
  from pkdot_jax.study import demo

  rows = []
  for fold in range(3):
    for seed in range(2):
      for weight, val, test in ((0.3, 0.70, 0.9), (0.6, 0.80, 0.6), (1.2, 0.75, 0.7)):
        rows.append({"method": "pkdot@grid", "fold": fold, "seed": seed, "weight": weight,
                     "val_accuracy": val + 0.01 * fold, "test_accuracy": test})
      rows.append({"method": "task_only", "fold": fold, "seed": seed, "weight": 1.0, "val_accuracy": 0.7,
                   "test_accuracy": 0.5})
  kept, chosen = demo.select_weights(rows)
  assert chosen == {"pkdot": {"weights": pytest.approx({0.3: 0.71, 0.6: 0.81, 1.2: 0.76}), "chosen": 0.6}}
  assert {r["method"] for r in kept} == {"pkdot", "task_only"} and len(kept) == 12
  assert all(r["test_accuracy"] == 0.6 for r in kept if r["method"] == "pkdot")  # chosen on val, not on test
