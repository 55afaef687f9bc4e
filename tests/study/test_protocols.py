"""The protocol study in its tiny form: three settings end to end, what each setting does to the runs, and the
report's numbers against the results recomputed here."""

import csv
import os

import jax
import numpy as np
import pytest

from pkdot_jax import errors
from pkdot_jax.study import demo, protocols, stats
from pkdot_jax.train import checkpoint, records
from pkdot_jax.train.programs import Context
import cli_runner  # tests/ is on sys.path (pytest rootdir-relative import mode)

METHODS = ("video_only", "task_only", "pkdot")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """`pkdot demo --protocols --quick` with three rows (2 folds x 2 seeds per row and setting)."""
  tmp = tmp_path_factory.mktemp("protocols")
  patch = pytest.MonkeyPatch()
  original = demo.demo_sweep

  def local_sweep(quick, methods, full=False):
    spec = original(quick, methods, full)
    spec["base"].update({"data.data_dir": str(tmp / "tfds"), "num_devices": 1})
    return spec

  patch.setattr(demo, "demo_sweep", local_sweep)
  workdir = str(tmp / "study")
  try:
    text = protocols.main(workdir, quick=True, methods=METHODS, context=Context())
  finally:
    patch.undo()
  return workdir, text


def _members(run_dir: str):
  result = records.read_dict(records.result_path(run_dir, "student"))
  curves = [r for r in records.read_metrics(run_dir, ("student",)) if r["stage"] == "student"]
  return result["members"], curves


def test_the_settings_select_and_freeze_as_declared(study):
  workdir, _ = study
  subject_run = records.run_dir(os.path.join(workdir, "subject"), "method=pkdot__data.fold=0")
  authors_root = os.path.join(workdir, "authors")
  finetune = records.run_dir(authors_root, "method=pkdot__data.fold=0__student_backbone=finetune")
  frozen = records.run_dir(authors_root, "method=pkdot__data.fold=0__student_backbone=frozen_from_video")
  configs = {name: records.read_dict(records.config_path(d)) for name, d in
             (("a", subject_run), ("b", finetune), ("c", frozen))}
  assert configs["a"]["data"]["protocol"] == "subject" and not configs["a"]["data"].get("select_on_test")
  assert configs["b"]["data"]["protocol"] == configs["c"]["data"]["protocol"] == "authors"
  assert configs["b"]["data"]["select_on_test"] and configs["c"]["data"]["select_on_test"]
  assert configs["c"]["student_backbone"] == "frozen_from_video" and configs["b"]["student_backbone"] == "finetune"
  assert configs["b"]["teacher_workdir"] == configs["c"]["teacher_workdir"]  # one teacher for (b) and (c)

  # (a) keeps the last epoch; (b) keeps each member's best epoch on the test fold.
  members, curves = _members(subject_run)
  for i, member in enumerate(members):
    assert member["best_epoch"] == len(curves)
    assert member["test"]["accuracy"] == curves[-1]["test"][i]["accuracy"]
  members, curves = _members(finetune)
  for i, member in enumerate(members):
    per_epoch = [c["test"][i]["accuracy"] for c in curves]
    assert member["test"]["accuracy"] == max(per_epoch) == per_epoch[member["best_epoch"] - 1]

  # (c): the student's visual backbone is the video-only model's, unchanged by training.
  video_model = checkpoint.load_variables(records.best_dir(configs["c"]["teacher_workdir"], "pretrain_video"))
  student = checkpoint.load_variables(records.best_dir(frozen, "student"))
  assert jax.tree.structure(student["params"]["visual_backbone"]) == \
      jax.tree.structure(video_model["params"]["visual_backbone"])
  for got, want in zip(jax.tree.leaves(student["params"]["visual_backbone"]),
                       jax.tree.leaves(video_model["params"]["visual_backbone"])):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  finetuned = checkpoint.load_variables(records.best_dir(finetune, "student"))
  pairs = zip(jax.tree.leaves(finetuned["params"]["visual_backbone"]),
              jax.tree.leaves(video_model["params"]["visual_backbone"]))
  assert any(not np.array_equal(np.asarray(a), np.asarray(b)) for a, b in pairs)  # (b) trains its backbone


def test_the_report_matches_the_runs_and_rebuilds(study):
  workdir, text = study
  with open(os.path.join(workdir, "report", "results.csv")) as f:
    rows = list(csv.DictReader(f))
  assert {r["setting"] for r in rows if r["setting"]} == {"subject", "authors", "authors_frozen"}

  def fold_means(setting, method):
    per_fold = {}
    for r in rows:
      if r["setting"] == setting and r["method"] == method:
        per_fold.setdefault(r["fold"], []).append(float(r["test_accuracy"]))
    assert len(per_fold) == 2 and all(len(v) == 2 for v in per_fold.values())  # 2 folds x 2 seeds
    return [np.mean(v) for _, v in sorted(per_fold.items())]

  summary = records.read_dict(os.path.join(workdir, "report", "summary.json"))
  for method in METHODS:
    a, b, c = (fold_means(s, method) for s in ("subject", "authors", "authors_frozen"))
    by_setting = {s: next(e for e in summary["tables"][s] if e["method"] == method) for s in summary["tables"]}
    assert by_setting["subject"]["mean"] == pytest.approx(np.mean(a))
    assert by_setting["authors_frozen"]["mean"] == pytest.approx(np.mean(c))
    leaks = summary["inflation"]["accuracy"]
    assert leaks["b-a"][method]["diff"] == pytest.approx(np.mean(b) - np.mean(a))
    assert leaks["c-b"][method]["diff"] == pytest.approx(np.mean(np.subtract(c, b)))
    assert f"| {method} |" in text
  assert "smoke test" in text and "Holm p" not in text  # 2 folds: means only
  assert "![test accuracy per row and setting](protocols.png)" in text
  assert os.path.exists(os.path.join(workdir, "report", "protocols.png"))

  first = open(os.path.join(workdir, "report", "report.md")).read()
  os.remove(os.path.join(workdir, "report", "report.md"))
  proc = cli_runner.pkdot("report", workdir, timeout=600)  # `pkdot report WORKDIR`: from the files
  assert proc.returncode == 0, proc.stderr
  assert open(os.path.join(workdir, "report", "report.md")).read() == first
  assert proc.stdout == first + f"\nreport: {os.path.join(workdir, 'report', 'report.md')}\n"


def test_a_study_of_other_flags_is_refused_before_anything_is_written(study):
  workdir, _ = study
  path = os.path.join(workdir, protocols.INFO_FILE)
  before = open(path).read()
  with pytest.raises(errors.UsageError, match="methods="):
    protocols.main(workdir, quick=True, methods=("video_only", "task_only", "sp"))
  assert open(path).read() == before


def test_welch_interval_equals_scipy():
  from scipy import stats as scipy_stats

  rng = np.random.default_rng(0)
  a, b = rng.normal(0.70, 0.02, 10), rng.normal(0.64, 0.05, 9)
  got = stats.welch_interval(a, b, 0.95)
  want = scipy_stats.ttest_ind(a, b, equal_var=False)
  low, high = want.confidence_interval(0.95)
  assert got["diff"] == pytest.approx(a.mean() - b.mean())
  assert got["p"] == pytest.approx(want.pvalue) and got["df"] == pytest.approx(want.df)
  assert (got["diff_low"], got["diff_high"]) == pytest.approx((low, high))
  assert np.isnan(stats.welch_interval([0.7], b)["p"])  # one value: no interval
