"""The training-size report of a sweep: training subjects read from the runs' configs, the table against the
task_only control per size, the plot (fake run directories; no training)."""

import json
import os

import numpy as np

from pkdot_jax.study import report, sweep
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
        assert report._training_subjects(os.path.join(root, "runs", name)) == n
        for seed in (0, 1):
          rows.append({"run": name, "method": method, "data.val_fraction": str(v), "fold": fold, "seed": seed,
                       "test_accuracy": 0.6 + 0.002 * n + (0.01 if method == "pkdot" else 0.0)
                       + 0.005 * rng.standard_normal()})
  text = report.controlled_table(rows, ["data.val_fraction"], "test_accuracy")
  assert text.count("| control |") == 2 and text.count("| pkdot |") == 2
  report.training_size_plot(os.path.join(root, "training_size.png"), root, rows, "test_accuracy")
  assert os.path.getsize(os.path.join(root, "training_size.png")) > 0
