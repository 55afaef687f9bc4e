"""Reports never present noise as statistics: from fewer than stats.MIN_FOLDS folds they show means and n only
(no interval, p-value, Holm p or power) and the quick demo says it is a smoke test; from enough folds the
intervals are there and stay inside the metric's range. Fake rows, no training."""

import re

import numpy as np

from pkdot_jax.study import demo, methods, report, stats

ROWS_ORDER = [demo.TEACHER, demo.CEILING, *methods.DEMO_METHODS]


def _rows(folds: int, seeds=(0, 1)):
  rng = np.random.default_rng(folds)
  rows = []
  for fold in range(folds):
    rows.append({"method": demo.CEILING, "fold": fold, "seed": 0, "test_accuracy": 0.75})
    for seed in seeds:
      # A teacher at 1 but in one fold: its t-interval alone would pass 1.
      rows.append({"method": demo.TEACHER, "fold": fold, "seed": seed, "test_accuracy": 0.8 if fold == 0 else 1.0})
      for i, name in enumerate(methods.DEMO_METHODS):
        rows.append({"method": name, "fold": fold, "seed": seed,
                     "test_accuracy": 0.6 + 0.01 * i + 0.02 * rng.standard_normal()})
  return rows


def _report(tmp_path, folds: int, mode: str) -> tuple[list, str]:
  table = demo.comparison_table(_rows(folds), ROWS_ORDER)
  info = {"mode": mode, "config": "synthetic:demo_quick", "methods": list(methods.DEMO_METHODS),
          "folds": list(range(folds)), "seeds": [0, 1], "wall_seconds": 10.0}
  text = demo.report_text(str(tmp_path), info, table, {}, {"wall_s": 0.0, "compile_s": 0.0}, {}, {"x": 0.1})
  return table, text


def test_two_folds_show_means_only_and_say_the_quick_run_is_a_smoke_test(tmp_path):
  table, text = _report(tmp_path, 2, "quick")
  assert not stats.supports_inference(2)
  for e in table:
    assert e["inference"] is False and not np.isfinite(e["ci_low"]) and not np.isfinite(e["ci_high"])
    for key in ("vs_control", "vs_video_only"):
      if key in e:
        assert set(e[key]) == {"diff", "folds", "pairs"}, (e["method"], key)  # no interval, p or Holm p
  assert "smoke test" in text and "too few steps to learn" in text
  assert "no interval, p-value or power" in text
  assert "p=" not in text and "Holm p" not in text and "detectable" not in text and "95% CI" not in text
  table_lines = [line for line in text.splitlines() if line.startswith("| ")]
  assert len(table_lines) == 1 + len(ROWS_ORDER)
  assert not any("[" in line for line in table_lines)  # no interval anywhere in the table
  pkdot_line = next(line for line in table_lines if line.startswith("| pkdot |"))
  assert re.search(r"\| [+-]0\.\d{3} \|", pkdot_line) and "(2 folds)" in pkdot_line  # mean difference, runs


def test_enough_folds_show_intervals_inside_the_metric_range(tmp_path):
  table, text = _report(tmp_path, 10, "default")
  by_name = {e["method"]: e for e in table}
  for e in table:
    assert e["inference"] is True and 0.0 <= e["ci_low"] <= e["mean"] <= e["ci_high"] <= 1.0, e
  teacher = [r["test_accuracy"] for r in _rows(10) if r["method"] == demo.TEACHER]
  fold_means = np.asarray(teacher).reshape(10, 2).mean(1)
  raw = stats.fold_t_interval(fold_means)
  assert raw["diff_high"] > 1.0 and by_name[demo.TEACHER]["ci_high"] == 1.0  # clipped, not shown past 1
  assert {"diff_low", "diff_high", "p", "p_holm"} <= set(by_name["pkdot"]["vs_control"])
  assert "smoke test" not in text and "Smallest difference to the control detectable" in text
  assert "Holm p" in text and re.search(r"\| pkdot \| .*\[[+-]0\.\d{3}, [+-]0\.\d{3}\], p=0\.\d{3}", text)


def test_report_embeds_its_plots(tmp_path):
  _, text = _report(tmp_path, 2, "quick")
  for name in ("methods.png", "learning_curves.png", "similarity.png"):
    assert f"]({name})" in text  # markdown images relative to report.md, which sits beside them


def test_sweep_tables_give_no_interval_from_four_folds():
  rows = [{"method": m, "fold": f, "seed": s, "test_accuracy": 0.6 + 0.01 * f + (0.02 if m == "pkdot" else 0.0)}
          for m in ("task_only", "pkdot") for f in range(4) for s in (0, 1)]
  line = next(l for l in report.controlled_table(rows, [], "test_accuracy").splitlines() if "| pkdot |" in l)
  cells = [c.strip() for c in line.strip("|").split("|")]
  assert cells[2] == "+0.020 (mean; 4 folds, no interval)" and cells[3] == cells[4] == ""
  contrast = report.contrast_table(rows, {"pkdot": "task_only"}, "test_accuracy")
  assert "[" not in contrast.splitlines()[-1] and "no interval" in contrast
