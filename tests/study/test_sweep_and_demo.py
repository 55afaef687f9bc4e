"""Sweeps (grid, shards, interruption and resume, aggregation) and the demo, end to end on tiny data."""

import json
import os

import pytest

from pkdot_jax.study import demo, report, results, sweep, tables
from pkdot_jax.train import loop
from pkdot_jax.train.programs import Context, Programs

SMOKE = "synthetic:smoke"


def test_shards_partition_the_grid():
  grid = {"config": SMOKE, "grid": {"distill.kwargs.k": [2, 4, 8], "data.fold": [0, 1], "method": ["pkdot"]}}
  runs = [name for name, _ in sweep.expand(grid)]
  assert len(runs) == len(set(runs)) == 6
  shards = [[name for name, _ in sweep.shard_runs(sweep.expand(grid), f"{i}/4")] for i in range(4)]
  assert sorted(sum(shards, [])) == sorted(runs)  # every run in exactly one shard
  assert all(len(s) in (1, 2) for s in shards)
  for bad in ("4/4", "1", "a/b"):
    with pytest.raises(ValueError, match="shard"):
      sweep.parse_shard(bad)


def test_overrides_are_checked():
  config = sweep.load_config(SMOKE)
  with pytest.raises(ValueError, match="no field 'nope'"):
    sweep.apply_overrides(config, {"distill.nope": 1})
  with pytest.raises(ValueError, match="unknown method"):
    sweep.apply_overrides(config, {"method": "pkdott"})
  changed = sweep.apply_overrides(config, {"method": "pkt", "distill.weight": [0.2, 0.6]})
  assert changed.distill.method == "pkt" and changed.distill.weight == (0.2, 0.6)
  assert config.distill.method == "pkdot"  # the base config is untouched


def test_runs_differing_only_in_the_loss_share_one_student_program():
  spec = {"config": SMOKE, "grid": {"method": ["video_only", "pkdot", "rkd", "mt_pkdot"], "data.fold": [0, 1]}}
  base = sweep.load_config(SMOKE)
  configs = {name: sweep.apply_overrides(base, overrides) for name, overrides in sweep.expand(spec)}
  before = {name: config.to_json() for name, config in configs.items()}
  programs = Programs()
  programs.share_losses(configs.values())
  branches = {name: [b["method"] for b in programs.student_losses(config)[0]] for name, config in configs.items()}
  for name, config in configs.items():
    if name.startswith(("method=pkdot", "method=rkd")):
      assert branches[name] == ["pkdot", "rkd"]  # same architecture: one program, a branch per loss
      assert programs.student_losses(config)[1] == branches[name].index(config.distill.method)
    else:  # video_only: another student; mt_pkdot: another (multitask) teacher: their own loss alone
      assert branches[name] == [config.distill.method]
    assert config.to_json() == before[name]  # the run's config is not rewritten
  foreign = sweep.apply_overrides(configs["method=pkdot__data.fold=0"], {"distill.kwargs.k": 7})
  assert programs.student_losses(foreign) == ([{"method": "pkdot", "kwargs": {"k": 7, "epsilon": 0.01,
                                                                            "max_iterations": 200},
                                               "mt_pkdot": False, "extra": []}], 0)


def test_programs_are_shared_only_where_the_selected_branch_alone_runs(monkeypatch):
  import jax

  base = sweep.load_config(SMOKE)
  one = [sweep.apply_overrides(base, {"method": m, "seeds": (0,)}) for m in ("pkdot", "rkd")]
  two = [sweep.apply_overrides(base, {"method": m, "seeds": (0, 1)}) for m in ("pkdot", "rkd")]
  assert sweep._should_share("auto", two)  # this CPU: members run one after another
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert sweep._should_share("auto", one) and not sweep._should_share("auto", two)  # vmap: every branch runs
  assert sweep._should_share(True, two) and not sweep._should_share(False, one)


def test_sweep_interrupted_and_resumed(tmp_path):
  """Four tiny runs (two folds x two T-Net objectives sharing teachers); the sweep is killed after the second
  run finishes, then re-run: finished runs are not started again, the table is complete."""
  data_dir = str(tmp_path / "tfds")
  spec = {"config": SMOKE, "base": {"data.data_dir": data_dir, "num_devices": 1},
          "grid": {"data.fold": [0, 1], "distill.weight": [0.3, 0.6]}}
  root = str(tmp_path / "sweep")

  class Interrupted(Exception):
    pass

  def stop_after_two(name, done=[]):  # noqa: B006 - the list counts calls
    done.append(name)
    if len(done) == 2:
      raise Interrupted

  context = Context()
  with pytest.raises(Interrupted):
    sweep.run_sweep(spec, root, after_run=stop_after_two, context=context)
  finished_first = sorted(os.listdir(os.path.join(root, "runs")))
  assert len(finished_first) == 2
  assert len(os.listdir(os.path.join(root, "teachers"))) == 1  # fold 0's teacher, shared by both weights

  names = sweep.run_sweep(spec, root, context=context)
  assert len(names) == 4
  for name in finished_first:  # done once: no second start recorded
    assert len(json.load(open(os.path.join(root, "runs", name, "run_info.json")))) == 1
  for name in names:
    student = [r for r in loop.read_metrics(os.path.join(root, "runs", name)) if r["stage"] == "student"]
    assert [r["epoch"] for r in student] == [1]
  assert len(os.listdir(os.path.join(root, "teachers"))) == 2  # one per fold
  # Both folds and both weights trained with one compiled step per stage (teacher, T-Net, student).
  assert sorted(k.split('"')[1] for k in context.programs.keys() if k.startswith("train_step:")) == [
      "student", "teacher", "tnet"]

  text = report.main(root)
  rows = results.collect(root)
  assert len(rows) == 4 and {r["distill.weight"] for r in rows} == {"0.3", "0.6"}
  assert "| 0.3 |" in text and "| 0.6 |" in text and "hardware: cpu" in text
  assert os.path.exists(os.path.join(root, "summary.csv")) and os.path.exists(os.path.join(root, "summary.png"))


def test_demo_quick_end_to_end_and_the_report_rebuild(tmp_path, monkeypatch, capsys):
  """`pkdot demo --quick` as the README runs it (the default rows, 2 folds x 2 seeds), into a temporary data
  dir: ceiling, teachers, T-Nets, students, the fold-aware comparison with the control and the plots; the
  T-Net + fusion students share one compiled program. Then `pkdot report WORKDIR` rebuilds the same report."""
  monkeypatch.setattr(demo, "CONFIG", "synthetic")
  original = demo.demo_sweep

  def local_sweep(quick, methods, full=False):
    spec = original(quick, methods, full)
    spec["base"]["data.data_dir"] = str(tmp_path / "tfds")
    spec["base"]["num_devices"] = 1
    return spec

  monkeypatch.setattr(demo, "demo_sweep", local_sweep)
  context = Context()
  workdir = str(tmp_path / "demo")
  text = demo.main(workdir, quick=True, context=context)
  out = os.path.join(workdir, "report")
  for name in ("report.md", "results.csv", "methods.png", "learning_curves.png", "similarity.png",
               "summary.json"):
    assert os.path.exists(os.path.join(out, name)), name
  summary = json.load(open(os.path.join(out, "summary.json")))
  rows = [row["method"] for row in summary["table"]]
  assert rows == [demo.TEACHER, demo.CEILING, *demo.methods_lib.DEMO_METHODS]  # the report's order
  by_name = {row["method"]: row for row in summary["table"]}
  for name in demo.methods_lib.DEMO_METHODS:
    assert by_name[name]["n"] == 4 and by_name[name]["folds"] == 2, name  # 2 folds x 2 seeds
    assert f"| {name} |" in text
  for name in ("pkdot", "mt_pkdot", "generalized_distillation", "hinton_kd", "sp"):
    # 2 folds: the mean difference over the 4 pairs, no interval or p-value (stats.MIN_FOLDS).
    assert by_name[name]["vs_control"]["pairs"] == 4 and "p_holm" not in by_name[name]["vs_control"]
    assert "vs_video_only" in by_name[name]
  assert "smoke test" in text and "p=" not in text and "Holm p" not in text and "detectable" not in text
  assert "![test accuracy per row](methods.png)" in text
  out_err = capsys.readouterr()
  assert f"report: {os.path.join(workdir, 'report', 'report.md')}" in out_err.out.splitlines()
  assert "[sweep]" not in out_err.out and "[sweep]" in out_err.err  # progress on stderr, results on stdout
  assert "vs_control" in by_name["video_only"] and "vs_control" not in by_name["task_only"]
  assert by_name[demo.CEILING]["n"] == 2  # one probe per fold
  timing = summary["timing"]
  assert timing["task_only"]["compile_s"] > 0 and timing["pkdot"]["wall_s"] > 0
  student_steps = [k for k in context.programs.keys() if k.startswith('train_step:["student"')]
  assert len(student_steps) == 2  # the video-only student's, and one for the T-Net + fusion students

  # The rebuild reproduces the report from the files alone.
  first = open(os.path.join(out, "report.md")).read()
  os.remove(os.path.join(out, "report.md"))
  rebuilt = demo.show_report(workdir)
  assert rebuilt == first.rstrip("\n") and open(os.path.join(out, "report.md")).read() == first


def test_a_diverging_run_is_recorded_and_the_sweep_goes_on(tmp_path):
  """A run whose loss turns non-finite does not stop the sweep: it is written to <run>/failed.json, the other
  runs finish, and the report names it."""
  spec = {"config": SMOKE, "base": {"data.data_dir": str(tmp_path / "tfds"), "num_devices": 1,
                                    "pipeline": ("teacher",), "log_every": 1},
          "grid": {"optimizer.learning_rate": [1e30, 1e-3]}}
  root = str(tmp_path / "sweep")
  done = sweep.run_sweep(spec, root, context=Context())
  assert done == ["optimizer.learning_rate=0.001"]
  failed = results.failed_runs(root)
  name = "optimizer.learning_rate=1e+30"
  assert list(failed) == [name] and "non-finite loss" in failed[name]
  assert any(line.startswith("- FAILED, left out of the tables: optimizer.learning_rate=1e+30")
             for line in tables.provenance_lines(results.provenance(root)))
