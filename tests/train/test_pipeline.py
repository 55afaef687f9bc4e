"""End-to-end training on the synthetic data: pipeline, resume exactness, teacher cache, vmapped members,
bad inputs. Tiny models and a few steps; equalities are what a wrong implementation would break."""

import json
import os
import re

import jax
import numpy as np
import pytest

from pkdot_jax import console
from pkdot_jax.study import sweep
from pkdot_jax.train import checkpoint, loop, summaries
from train_helpers import smoke_config
import cli_runner  # tests/ is on sys.path (pytest rootdir-relative import mode)


def _records(workdir, stage):
  return [r for r in loop.read_metrics(workdir) if r["stage"] == stage]


def _latest(workdir, stage):
  ck = checkpoint.Checkpointer(os.path.join(workdir, stage))
  tree = ck.restore_latest_as_saved()
  ck.close()
  return jax.tree.map(np.asarray, tree)


def _assert_trees_close(a, b, rtol):
  """|a - b| <= rtol |b| over the whole tree (Euclidean norm), and no leaf off by more than 1000 rtol of its own
  norm (+1e-5): small leaves with a near-zero gradient (attention biases) carry mostly rounding, which a
  per-leaf rtol would flag although nothing is wrong; a mis-wired leaf is off by O(1)."""
  paths = jax.tree_util.tree_flatten_with_path(a)[0]
  leaves_b = jax.tree.leaves(b)
  assert len(paths) == len(leaves_b)
  total_error = total_scale = 0.0
  for (path, x), y in zip(paths, leaves_b):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape, jax.tree_util.keystr(path)
    error, scale = np.linalg.norm(x - y), np.linalg.norm(y)
    total_error, total_scale = total_error + error ** 2, total_scale + scale ** 2
    assert error <= 1000 * rtol * scale + 1e-5, f"{jax.tree_util.keystr(path)}: |a-b| = {error:.3g}, |b| = {scale:.3g}"
  assert np.sqrt(total_error) <= rtol * np.sqrt(total_scale), (np.sqrt(total_error), np.sqrt(total_scale))


def test_pipeline_end_to_end(trained_pipeline):
  config, workdir, results = trained_pipeline
  assert set(results) == {"teacher", "tnet", "student"}
  teacher = _records(workdir, "teacher")
  assert [r["epoch"] for r in teacher] == [1, 2]
  assert teacher[1]["train_loss"][0] < teacher[0]["train_loss"][0]  # the teacher learns
  assert "tnet_mse" in _records(workdir, "tnet")[0]["val"][0]
  student = results["student"]["members"][0]
  test = student["test"]
  data = __import__("pkdot_jax.train.input", fromlist=["load"]).load(config)
  # Every test example scored exactly once (the authors' drop_last loader lost the tail).
  assert np.sum(test["confusion_matrix"]) == len(data.test) == test["num_examples"]
  assert 0.0 <= test["accuracy"] <= 1.0
  info = json.load(open(os.path.join(workdir, "run_info.json")))
  assert info[0]["hardware"]["platform"] == "cpu" and info[0]["versions"]["jax"]

  # Re-running the same command resumes: finished stages are skipped, nothing is retrained.
  lines = open(os.path.join(workdir, "metrics.jsonl")).read()
  again = loop.run_pipeline(config, workdir)
  assert again == results
  assert open(os.path.join(workdir, "metrics.jsonl")).read() == lines


def test_event_files_hold_every_step_and_agree_with_metrics_jsonl(trained_pipeline, capsys):
  """Each stage's TensorBoard events (read back without TensorFlow) hold the per-step loss terms of every step
  once; their epoch means are metrics.jsonl's train_terms and train_loss; val/test scalars equal its records."""
  config, workdir, _ = trained_pipeline
  expected_terms = {"teacher": {"loss", "task_loss", "grad_norm"}, "tnet": {"loss", "mse", "grad_norm"},
                    "student": {"loss", "task_loss", "distill_loss", "grad_norm", "ot_iterations", "ot_converged"}}
  for stage, terms in expected_terms.items():
    records = _records(workdir, stage)
    scalars = summaries.read_scalars(os.path.join(workdir, stage, "tensorboard"))
    member = records[0]["members"][0]
    total = records[-1]["step"]
    for term in terms:
      steps = [s for s, _ in scalars[f"train/{term}/{member}"]]
      assert steps == list(range(1, total + 1)), (stage, term)
    assert [s for s, _ in scalars["train/learning_rate"]] == list(range(1, total + 1))
    assert all(v == pytest.approx(config.optimizer.learning_rate) for _, v in scalars["train/learning_rate"])
    first = 1
    for r in records:
      assert set(r["train_terms"]) == terms, stage
      for term in terms:
        values = [v for s, v in scalars[f"train/{term}/{member}"] if first <= s <= r["step"]]
        assert np.mean(values) == pytest.approx(r["train_terms"][term][0], rel=1e-5), (stage, term, r["epoch"])
      assert r["train_terms"]["loss"][0] == pytest.approx(r["train_loss"][0], rel=1e-5)
      for split in ("val", "test"):
        for name, value in r[split][0].items():
          if isinstance(value, float):
            assert (r["step"], pytest.approx(value, rel=1e-6)) in scalars[f"{split}/{name}/{member}"]
      first = r["step"] + 1
  # The student's distillation term is a real PKDOT value: the total is task + weight x distill per step.
  student = summaries.read_scalars(os.path.join(workdir, "student", "tensorboard"))
  member = _records(workdir, "student")[0]["members"][0]
  for (_, total), (_, task), (_, distill) in zip(*(student[f"train/{t}/{member}"]
                                                   for t in ("loss", "task_loss", "distill_loss"))):
    assert total == pytest.approx(task + config.distill.weight * distill, rel=1e-5)

  loop.run_pipeline(config, workdir)  # finished: every stage says it was skipped
  err = capsys.readouterr().err
  for stage in ("teacher", "tnet", "student"):
    assert f"{stage}: done, skipped ({os.path.join(workdir, stage, 'result.json')} exists)" in err
  console.set_verbosity(console.QUIET)  # --verbosity=-1: errors and results only
  try:
    loop.run_pipeline(config, workdir)
  finally:
    console.set_verbosity(console.DEFAULT)
  assert capsys.readouterr().err == ""


def test_resume_is_exact(data_dir, tmp_path, capsys, smoke_context):
  """Killed mid-epoch after step 4 (checkpoint every step) and resumed == uninterrupted, data order and RNG
  included; the console says so, and the event files hold each step once with the uninterrupted values. The
  uninterrupted run checkpoints at its epochs' ends only (saves are most of this test's time; how often a run
  saves changes nothing it trains)."""
  config = smoke_config(data_dir, **{"checkpoint.every_steps": 1})
  full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
  context = smoke_context  # the smoke teacher's programs, traced and compiled once
  loop.run_pipeline(smoke_config(data_dir), full, ("teacher",), context=context)
  loop.validate_config(config, ("teacher",))
  checkpoint.check_or_write_config(resumed, config)
  stopped = loop.run_stage("teacher", config, resumed, stop_after_steps=4, context=context)
  assert stopped == {"stopped_at": 4}
  loop.run_pipeline(config, resumed, ("teacher",), context=context)
  a, b = _latest(full, "teacher"), _latest(resumed, "teacher")
  assert int(a["state"]["step"]) == int(b["state"]["step"]) == 6
  _assert_trees_close(a["state"], b["state"], 1e-6)
  assert [r["val"] for r in _records(full, "teacher")] == [r["val"] for r in _records(resumed, "teacher")]
  lines = [line.strip() for line in re.split(r"[\r\n]+", capsys.readouterr().err)]  # bars redraw after \r
  assert f"teacher: training 6 steps (2 epochs x 3), member seed0_w0.6, in {os.path.join(resumed, 'teacher')}" \
      in lines
  assert "teacher: stopped at step 4 of 6 (checkpoint saved)" in lines
  assert "teacher: resuming at step 4 of 6 (member seed0_w0.6)" in lines
  epoch_line = re.compile(r"teacher epoch 2/2 \| loss [0-9.]+ task [0-9.]+ grad_norm [0-9.]+ \| val accuracy "
                          r"[0-9.]+ \| test accuracy [0-9.]+ \| [0-9]+ clips/s")
  assert sum(bool(epoch_line.fullmatch(line)) for line in lines) == 2, lines  # the full run's and the resumed one's
  events = [summaries.read_scalars(os.path.join(d, "teacher", "tensorboard")) for d in (full, resumed)]
  for tag in ("train/loss/seed0_w0.6", "train/grad_norm/seed0_w0.6"):
    assert [s for s, _ in events[1][tag]] == list(range(1, 7))
    np.testing.assert_allclose([v for _, v in events[1][tag]], [v for _, v in events[0][tag]], rtol=1e-5)


def test_vmapped_seeds_equal_separate_runs(data_dir, tmp_path, smoke_context):
  # One step (the whole training split in one batch): several steps of a tiny BatchNorm net amplify the
  # rounding differences of the batched (grouped) convolutions past 1e-5 without anything being wrong.
  sgd = {"stages.teacher.num_epochs": 1, "optimizer.name": "sgd", "optimizer.learning_rate": 0.01,
         "batch_size": 48}
  together = smoke_config(data_dir, seeds=(0, 1), **sgd)
  context = smoke_context  # the two single-seed runs share one step program (the seed is data, not program)
  loop.run_pipeline(together, str(tmp_path / "both"), ("teacher",), context=context)
  both = _latest(str(tmp_path / "both"), "teacher")["state"]
  for m, seed in enumerate((0, 1)):
    alone_dir = str(tmp_path / f"seed{seed}")
    loop.run_pipeline(smoke_config(data_dir, seeds=(seed,), **sgd), alone_dir, ("teacher",), context=context)
    alone = _latest(alone_dir, "teacher")["state"]
    _assert_trees_close(jax.tree.map(lambda x: x[m], both["params"]), alone["params"], 1e-5)


def test_other_config_in_workdir_is_refused(data_dir, tmp_path):
  config = smoke_config(data_dir)
  checkpoint.check_or_write_config(str(tmp_path), config)
  changed = smoke_config(data_dir, **{"optimizer.learning_rate": 0.5})
  with pytest.raises(ValueError, match=r"optimizer\.learning_rate: saved 0\.001, now 0\.5"):
    loop.run_pipeline(changed, str(tmp_path))


def test_bad_configs_are_named(data_dir, tmp_path):
  with pytest.raises(ValueError, match="pkt"):  # the valid names are listed
    loop.run_pipeline(smoke_config(data_dir, **{"distill.method": "pktt"}), str(tmp_path / "a"))
  with pytest.raises(ValueError, match="unknown stage 'teachr'"):
    loop.run_pipeline(smoke_config(data_dir), str(tmp_path / "b"), ("teachr",))
  regression = smoke_config(data_dir, **{"distill.method": "hinton_kd"})
  regression.model.task = "regression"
  with pytest.raises(ValueError, match="logits.*regression"):
    loop.run_pipeline(regression, str(tmp_path / "c"))
  with pytest.raises(ValueError, match="not divisible by the 8 devices"):
    loop.run_pipeline(smoke_config(data_dir, num_devices=8, batch_size=12), str(tmp_path / "d"), ("teacher",))
  with pytest.raises(ValueError, match="multitask"):
    loop.run_pipeline(smoke_config(data_dir, **{"distill.mt_pkdot": True}), str(tmp_path / "e"))
  # An extra term's name is checked too.
  with pytest.raises(ValueError, match=r"distill\.extra\[0\]\.method='pktt'.*pkt"):
    loop.run_pipeline(smoke_config(data_dir, **{"distill.extra": ({"method": "pktt", "weight": 1.0},)}),
                      str(tmp_path / "f"))
  with pytest.raises(ValueError, match="distill.extra.*distill.method is 'none'"):
    loop.run_pipeline(smoke_config(data_dir, **{"distill.method": "none",
                                                "distill.extra": ({"method": "pkt", "weight": 1.0},)}),
                      str(tmp_path / "g"))


def test_non_finite_loss_stops_with_last_good_checkpoint(data_dir, tmp_path, smoke_context):
  config = smoke_config(data_dir, **{"optimizer.learning_rate": 1e30, "checkpoint.every_steps": 1,
                                     "log_every": 1})
  workdir = str(tmp_path)
  with pytest.raises(loop.NonFiniteLossError, match=r"teacher: non-finite loss at step \d+ \(terms: .*loss") as e:
    loop.run_pipeline(config, workdir, ("teacher",), context=smoke_context)  # the init and eval programs shared
  bad_step = int(str(e.value).split("at step ")[1].split(" ")[0])
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "teacher", "checkpoints")) if d.isdigit())
  assert saved and max(saved) < bad_step  # no checkpoint written from the bad step on
  assert f"step {max(saved)}" in str(e.value)
  assert not os.path.exists(os.path.join(workdir, "teacher", "result.json"))


def test_members_read_their_seeds_teacher():
  """Seeds x weights members: teacher-side stages keep one member per seed, and each student member gets its
  own seed's teacher variables (not the member at the same position)."""
  config = sweep.apply_overrides(smoke_config("unused", seeds=(0, 1)), {"distill.weight": (0.3, 0.9)})
  members = loop.Members.from_config(config)
  assert members.seeds == (0, 1, 0, 1) and members.weights == (0.3, 0.3, 0.9, 0.9)
  assert loop.Members.from_config(config, "teacher").seeds == (0, 1)
  teacher = {"w": np.array([[10.0, 11.0], [20.0, 21.0]])}  # member axis first: seeds 0 and 1
  np.testing.assert_array_equal(members.arrange(teacher, (0, 1))["w"][:, 0], [10.0, 20.0, 10.0, 20.0])
  single = loop.Members.from_config(sweep.apply_overrides(config, {"seeds": (1,)}))
  np.testing.assert_array_equal(single.arrange({"w": np.array([5.0, 6.0])}, (1,))["w"], [[5.0, 6.0]] * 2)


# Adam divides by sqrt(v): for parameters whose true gradient is zero (attention key biases: softmax ignores
# them) it turns float rounding noise into lr-sized steps, so two programs that differ only in rounding drift
# apart. The equality tests therefore train with SGD, where noise stays noise-sized.
def test_teacher_cache_and_weight_members_equal_single_runs(trained_pipeline, smoke_context, tmp_path):
  """The teacher cache gives the student the in-step teacher trains (the config's weight, 0.6, alone); and a
  student with two distillation weights (two members of one seed, each reading the one teacher) trains, per
  member, what the run with that weight alone trains, with and without the cache. One set of runs serves both
  (the single-weight runs are the cache comparison's)."""
  config, teacher_dir, _ = trained_pipeline
  assert config.distill.weight == 0.6
  singles = {}
  context = smoke_context  # the four runs' init and evaluation programs are the fixture student's
  for cache in (False, True):
    finals = {}
    for weight in ((0.3, 0.6), 0.6):
      student_config = sweep.apply_overrides(config, {
          "stages.student.optimizer": {"name": "sgd"}, "cache_teacher": cache, "teacher_workdir": teacher_dir,
          "distill.weight": weight})
      workdir = str(tmp_path / f"cache_{cache}_{weight}")
      loop.run_pipeline(student_config, workdir, ("student",), context=context)
      finals[weight] = _latest(workdir, "student")["state"]
    _assert_trees_close(jax.tree.map(lambda x: x[1], finals[(0.3, 0.6)]["params"]), finals[0.6]["params"], 1e-5)
    singles[cache] = finals[0.6]
  # Same inputs, same arithmetic; only XLA's rounding differs between the cached and in-step teacher forward.
  _assert_trees_close(singles[False], singles[True], 1e-5)


# ------------------------------------------------------------------------------ the loss-switch examples
def _pkdot_cli(*args):
  """`pkdot ARGS` in a new interpreter from the repository root (the command a user types)."""
  return cli_runner.run_real(args, env=cli_runner.base_env(), timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pkt", "rkd"])
def test_readme_loss_switch_example_runs(trained_pipeline, tmp_path, method):
  """README: another student from the same teacher with `--config.distill.method=METHOD` (PKDOT's arguments
  are PKDOT's: the method runs with its own defaults), at the smoke size of the fixture's teacher."""
  config, teacher_dir, _ = trained_pipeline
  workdir = tmp_path / "student"
  proc = _pkdot_cli("train", "--config=synthetic:smoke", f"--workdir={workdir}", "--stages=student",
                    f"--config.teacher_workdir={teacher_dir}", f"--config.distill.method={method}",
                    f"--config.data.data_dir={config.data.data_dir}", "--config.num_devices=1",
                    "--config.stages.teacher.num_epochs=2")
  assert proc.returncode == 0, proc.stderr
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["distill"]["method"] == method and saved["distill"]["kwargs"] == {}
  result = json.loads((workdir / "student" / "result.json").read_text())
  assert np.isfinite(result["members"][0]["test"]["accuracy"])


@pytest.mark.slow
def test_help_loss_switch_example_runs(data_dir, tmp_path):
  """`pkdot train --help`'s example (`--config.distill.method=pkt --config.seeds=0,1`) on the smoke config:
  every stage trains, two members."""
  workdir = tmp_path / "syn"
  proc = _pkdot_cli("train", "--config=synthetic:smoke", f"--workdir={workdir}", "--config.distill.method=pkt",
                    "--config.seeds=0,1", f"--config.data.data_dir={data_dir}", "--config.num_devices=1")
  assert proc.returncode == 0, proc.stderr
  result = json.loads((workdir / "student" / "result.json").read_text())
  assert [m["seed"] for m in result["members"]] == [0, 1]


def test_workdir_saved_before_method_kwargs_resumes(tmp_path):
  """A config.json saved when PKDOT's arguments lived in distill.kwargs equals today's config on resume."""
  config = smoke_config(tmp_path / "tfds")
  workdir = tmp_path / "old"
  checkpoint.check_or_write_config(str(workdir), config)
  saved = json.loads((workdir / "config.json").read_text())
  saved["distill"]["kwargs"] = saved["distill"].pop("method_kwargs")["pkdot"]  # the older layout
  (workdir / "config.json").write_text(json.dumps(saved))
  checkpoint.check_or_write_config(str(workdir), config)  # no error: same run
  changed = smoke_config(tmp_path / "tfds", **{"distill.method_kwargs.pkdot.k": 3})
  with pytest.raises(ValueError, match="distill.kwargs.k"):
    checkpoint.check_or_write_config(str(workdir), changed)
  # The task-only control (method "none") was saved with PKDOT's arguments, which it never used.
  control = smoke_config(tmp_path / "tfds", **{"distill.method": "none"})
  workdir = tmp_path / "control"
  checkpoint.check_or_write_config(str(workdir), control)
  saved = json.loads((workdir / "config.json").read_text())
  saved["distill"]["kwargs"] = saved["distill"].pop("method_kwargs")["pkdot"]
  (workdir / "config.json").write_text(json.dumps(saved))
  checkpoint.check_or_write_config(str(workdir), control)
