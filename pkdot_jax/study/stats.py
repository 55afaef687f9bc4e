"""Paired comparisons of methods over folds x seeds that respect the fold structure, with Holm's correction.

Runs of one fold share their training and test subjects, so the seeds of a fold are not independent replicates
of the comparison: the unit of replication is the fold. For a method M and a control C, per fold f the mean over
seeds of the paired differences d_fs = acc(M, f, s) - acc(C, f, s) (same fold, same seed: same teacher member,
same data order) gives D_f; the estimate is mean_f D_f with a Student-t interval and a two-sided one-sample
t-test over the F folds (F - 1 degrees of freedom). The test subjects of the folds are disjoint, so the D_f are
independent given the dataset. With one seed per fold this is the usual paired t-test.

Holm's step-down procedure controls the family-wise error over the methods compared with the same control.
`detectable_effect` is the smallest true mean difference the test finds with the given power (normal-shift
approximation with the t quantiles at F - 1 degrees of freedom, the observed sd of the D_f). The reports show
none of these from fewer than `MIN_FOLDS` folds (`supports_inference`), only means and the number of runs.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

# Fewer folds than this: no interval, p-value or power is reported, only means and n. With F folds the t
# quantile has F - 1 degrees of freedom (12.7 at one, 4.3 at two) and the sd of the per-fold differences comes
# from F values: intervals from 2-4 folds are either uselessly wide or, when the few folds happen to agree,
# spuriously narrow (a p of 0.000 from two folds), and neither says anything about the methods.
MIN_FOLDS = 5


def supports_inference(folds: int) -> bool:
  """Whether `folds` per-fold values are enough for the intervals, tests and power this module computes."""
  return int(folds) >= MIN_FOLDS


def fold_differences(rows: Iterable[dict[str, Any]], control_rows: Iterable[dict[str, Any]], metric: str
                     ) -> dict[Any, float]:
  """{fold: mean over the seeds present in both of (row - control)}; rows need "fold", "seed" and `metric`."""
  control = {(r["fold"], r["seed"]): r[metric] for r in control_rows if metric in r}
  per_fold: dict[Any, list[float]] = {}
  for r in rows:
    key = (r["fold"], r["seed"])
    if metric in r and key in control:
      per_fold.setdefault(r["fold"], []).append(float(r[metric]) - float(control[key]))
  return {fold: float(np.mean(d)) for fold, d in sorted(per_fold.items())}


def fold_t_interval(fold_diffs: Iterable[float], confidence: float = 0.95) -> dict[str, float]:
  """Mean of per-fold differences, its Student-t interval and two-sided p-value (t over folds)."""
  from scipy import stats as scipy_stats

  d = np.asarray(list(fold_diffs), np.float64)
  out = {"diff": float(d.mean()) if d.size else float("nan"), "folds": int(d.size), "diff_low": float("nan"),
         "diff_high": float("nan"), "p": float("nan"), "sd_folds": float("nan")}
  if d.size < 2:
    return out
  sd = float(d.std(ddof=1))
  se = sd / np.sqrt(d.size)
  half = float(scipy_stats.t.ppf(0.5 + confidence / 2, d.size - 1)) * se
  out.update(diff_low=out["diff"] - half, diff_high=out["diff"] + half, sd_folds=sd)
  if se > 0:
    out["p"] = float(2 * scipy_stats.t.sf(abs(out["diff"]) / se, d.size - 1))
  elif out["diff"] == 0:
    out["p"] = 1.0  # identical in every fold; a non-zero constant difference has no t-test (p stays NaN)
  return out


def welch_interval(values: Iterable[float], reference: Iterable[float], confidence: float = 0.95
                   ) -> dict[str, float]:
  """mean(values) - mean(reference) for two independent samples (e.g. per-fold means under two fold designs that
  share no folds): Welch's unequal-variance interval and two-sided p-value (Welch-Satterthwaite df)."""
  from scipy import stats as scipy_stats

  a, b = np.asarray(list(values), np.float64), np.asarray(list(reference), np.float64)
  out = {"diff": float(a.mean() - b.mean()) if a.size and b.size else float("nan"), "folds": int(min(a.size, b.size)),
         "diff_low": float("nan"), "diff_high": float("nan"), "p": float("nan"), "df": float("nan")}
  if a.size < 2 or b.size < 2:
    return out
  va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
  se = float(np.sqrt(va + vb))
  if se == 0:
    out["p"] = 1.0 if out["diff"] == 0 else float("nan")
    out.update(diff_low=out["diff"], diff_high=out["diff"])
    return out
  df = float((va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1)))
  half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df)) * se
  out.update(diff_low=out["diff"] - half, diff_high=out["diff"] + half, df=df,
             p=float(2 * scipy_stats.t.sf(abs(out["diff"]) / se, df)))
  return out


def holm(p_values: dict[str, float]) -> dict[str, float]:
  """Holm-adjusted p-values (step-down, monotone, capped at 1); NaN p-values are left out and stay NaN."""
  items = sorted(((p, name) for name, p in p_values.items() if np.isfinite(p)), key=lambda x: x[0])
  m = len(items)
  adjusted: dict[str, float] = {name: float("nan") for name in p_values}
  running = 0.0
  for i, (p, name) in enumerate(items):
    running = max(running, min(1.0, (m - i) * p))
    adjusted[name] = running
  return adjusted


def detectable_effect(sd_folds: float, folds: int, alpha: float = 0.05, power: float = 0.8) -> float:
  """Smallest true mean difference a two-sided t-test over `folds` per-fold differences of standard deviation
  `sd_folds` detects with probability `power` at level `alpha`: (t_{1-alpha/2} + t_power) sd / sqrt(F)."""
  from scipy import stats as scipy_stats

  if folds < 2 or not np.isfinite(sd_folds):
    return float("nan")
  df = folds - 1
  return float((scipy_stats.t.ppf(1 - alpha / 2, df) + scipy_stats.t.ppf(power, df)) * sd_folds / np.sqrt(folds))


def compare(rows: list[dict[str, Any]], method_key: str, control: str, metric: str,
            methods: Iterable[str] | None = None, confidence: float = 0.95) -> dict[str, dict[str, float]]:
  """Every method against `control` (rows grouped by row[method_key]): the fold-aware interval and p-value of
  each, and Holm-adjusted p-values over the methods compared (the control itself excluded)."""
  by_method: dict[str, list[dict[str, Any]]] = {}
  for r in rows:
    by_method.setdefault(r[method_key], []).append(r)
  control_rows = by_method.get(control, [])
  names = [m for m in (methods if methods is not None else by_method) if m != control and m in by_method]
  out = {}
  for name in names:
    out[name] = fold_t_interval(fold_differences(by_method[name], control_rows, metric).values(), confidence)
    out[name]["pairs"] = sum(1 for r in by_method[name] if metric in r and any(
        c["fold"] == r["fold"] and c["seed"] == r["seed"] for c in control_rows))
  adjusted = holm({name: out[name]["p"] for name in names})
  for name in names:
    out[name]["p_holm"] = adjusted[name]
  return out
