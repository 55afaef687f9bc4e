"""The training-size report of a sweep: training subjects read from the runs' configs, the table against the
task_only control per size, the plot (fake run directories; no training)."""

import json
import os

import numpy as np

from pkdot_jax.study import plots, report, results, sweep
from pkdot_jax.train import checkpoint


def test_training_size_table_and_plot(tmp_path):
  base = sweep.load_config("synthetic:demo_size")
  root = str(tmp_path)
  rows = []
  rng = np.random.default_rng(0)
  for v, n in ((0.852, 8), (0.111, 48)):
    for method in ("task_only", "pkdot"):
      for fold in range(3):
        config = sweep.apply_overrides(base, {"data.val_fraction": v, "data.fold": fold, "method": method})
        name = sweep.run_name({"data.val_fraction": v, "method": method, "data.fold": fold})
        os.makedirs(os.path.join(root, "runs", name))
        with open(os.path.join(root, "runs", name, "config.json"), "w") as f:
          json.dump(checkpoint.config_to_dict(config), f)
        assert results.training_subjects(os.path.join(root, "runs", name)) == n
        for seed in (0, 1):
          rows.append({"run": name, "method": method, "data.val_fraction": str(v), "fold": fold, "seed": seed,
                       "test_accuracy": 0.6 + 0.002 * n + (0.01 if method == "pkdot" else 0.0)
                       + 0.005 * rng.standard_normal()})
  results.add_training_subjects(root, rows)
  assert {r["training_subjects"] for r in rows} == {8, 48}
  text = report.controlled_table(rows, ["training_subjects"], "test_accuracy")
  assert text.count("| control |") == 2 and text.count("| pkdot |") == 2
  plots.training_size_plot(os.path.join(root, "training_size.png"), rows, "test_accuracy", "task_only")
  assert os.path.getsize(os.path.join(root, "training_size.png")) > 0


def test_contrast_table_compares_each_method_with_its_own_reference():
  """`contrasts` in a sweep: the named method against its reference, not against the control; the difference
  is the per-fold mean of the seed differences, Holm over the contrasts (one contrast: Holm p = p)."""
  rows = []
  for fold in range(5):  # stats.MIN_FOLDS: fewer would show no interval
    for seed in (0, 1):
      base = 0.6 + 0.01 * fold + 0.003 * seed
      for method, shift in (("task_only", 0.0), ("generalized_distillation", 0.05), ("pkdot_plus_gd", 0.07)):
        rows.append({"run": f"{method}{fold}", "method": method, "fold": fold, "seed": seed,
                     "test_accuracy": base + shift + (0.004 * (fold % 2) if method == "pkdot_plus_gd" else 0.0)})
  text = report.contrast_table(rows, {"pkdot_plus_gd": "generalized_distillation"}, "test_accuracy")
  line = next(l for l in text.splitlines() if l.startswith("| pkdot_plus_gd |"))
  cells = [c.strip() for c in line.strip("|").split("|")]
  assert cells[1] == "generalized_distillation"
  assert cells[2].startswith("+0.022 [")  # 0.02 + the mean of (0, 0.004, 0, 0.004, 0); not +0.072 (the control)
  assert cells[3] == cells[4] and cells[5] == "10"
