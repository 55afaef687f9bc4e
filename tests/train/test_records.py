"""The run record: atomic JSON records named when unreadable, the metrics journal surviving a cut-short line,
checksum manifests that catch damaged checkpoints, and a damaged latest checkpoint replaced by the previous one
with the resumed run equal to an uninterrupted one."""

import glob
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pkdot_jax.study import results, sweep
from pkdot_jax.train import checkpoint, checksums, loop, records
from train_helpers import smoke_config


def _largest_file(directory):
  files = [f for f in glob.glob(os.path.join(directory, "**"), recursive=True) if os.path.isfile(f)]
  return max(files, key=os.path.getsize)


def _flip_byte(path):
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2] ^= 0x01
  open(path, "wb").write(bytes(data))


def _zero_64(path):
  data = bytearray(open(path, "rb").read())
  start = len(data) // 3
  data[start:start + 64] = bytes(64)
  open(path, "wb").write(bytes(data))


def _truncate(path):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:len(data) // 2])


DAMAGE = {"flip one byte": _flip_byte, "zero 64 bytes": _zero_64, "truncate": _truncate}


# ------------------------------------------------------------------------------------------------ JSON records
@pytest.mark.parametrize("content", ["", "{\"seeds\": [0", "\x00" * 16, "[1, 2]"])
def test_unreadable_record_is_named(tmp_path, content):
  path = tmp_path / "config.json"
  path.write_text(content)
  with pytest.raises(records.RecordError) as e:
    records.read_dict(str(path))
  assert str(e.value).startswith(str(path) + ": ")
  assert records.read_json(str(tmp_path / "absent.json"), default=7) == 7


def test_write_json_replaces_atomically(tmp_path):
  path = str(tmp_path / "result.json")
  records.write_json(path, {"a": 1})
  records.write_json(path, {"a": 2}, indent=2)
  assert records.read_dict(path) == {"a": 2}
  assert os.listdir(tmp_path) == ["result.json"]  # no temporary file left behind


def test_run_names_round_trip():
  overrides = {"method": "pkdot", "distill.kwargs.k": 16, "distill.weight": (0.2, 0.6), "data.fold": 3}
  name = records.run_name(overrides)
  assert name == sweep.run_name(overrides)
  assert records.parse_run_name(name) == {"method": "pkdot", "distill.kwargs.k": "16", "distill.weight": "0.2,0.6",
                                          "data.fold": "3"}


# ------------------------------------------------------------------------------------------------ the journal
def test_cut_last_line_is_set_aside_and_appends_go_on(tmp_path, capfd):
  path = str(tmp_path / "metrics.jsonl")
  records.append_jsonl(path, {"stage": "teacher", "epoch": 1})
  cut = '{"stage": "teacher", "epoch": 2, "val": [{"accura'  # a full disk stops the write mid-line
  with open(path, "a") as f:
    f.write(cut)
  assert loop.read_metrics(str(tmp_path)) == [{"stage": "teacher", "epoch": 1}]  # readers skip it
  assert path in capfd.readouterr().err
  records.append_jsonl(path, {"stage": "teacher", "epoch": 2})
  err = capfd.readouterr().err
  assert f"{path}.corrupt-1" in err and "moved" in err
  assert open(f"{path}.corrupt-1").read() == cut  # nothing is lost
  assert [r["epoch"] for r in loop.read_metrics(str(tmp_path))] == [1, 2]
  # A complete but garbled last line (zeros from a crash) is set aside the same way.
  with open(path, "a") as f:
    f.write("\x00" * 40 + "\n")
  records.append_jsonl(path, {"stage": "teacher", "epoch": 3})
  assert open(f"{path}.corrupt-2").read() == "\x00" * 40 + "\n"
  assert [r["epoch"] for r in loop.read_metrics(str(tmp_path))] == [1, 2, 3]


def test_garbled_middle_line_is_an_error_naming_the_line(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w") as f:
    f.write('{"stage": "teacher", "epoch": 1}\n{"stage": "tea\n{"stage": "teacher", "epoch": 2}\n')
  with pytest.raises(records.RecordError, match=r"metrics\.jsonl: line 2 ") as e:
    loop.read_metrics(str(tmp_path))
  assert str(e.value).startswith(path)
  with pytest.raises(records.RecordError, match="line 2"):
    records.append_jsonl(path, {"stage": "teacher", "epoch": 3})
  assert open(path).read().count("\n") == 3  # nothing appended after a damaged middle


# --------------------------------------------------------------------------------------------- checksums
TREE = {"w": jnp.linspace(-1.0, 1.0, 30000, dtype=jnp.float32), "b": jnp.arange(5, dtype=jnp.float32)}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_latest_checkpoint_is_named_and_the_previous_one_used(tmp_path, capfd, damage):
  ck = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  ck.save(1, TREE)
  ck.save(2, jax.tree.map(lambda x: x * 2, TREE))
  ck.close()
  victim = _largest_file(str(tmp_path / "checkpoints" / "2"))
  DAMAGE[damage](victim)
  ck = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  restored = ck.restore_latest(TREE)
  np.testing.assert_array_equal(restored["w"], TREE["w"])  # step 1's values, not step 2's
  err = capfd.readouterr().err
  assert victim in err and "step 1" in err
  assert ck.latest_step() == 1 and os.path.isdir(tmp_path / "damaged" / "2.1")  # set aside, not deleted
  ck.save(2, TREE)  # the resumed run saves that step again
  ck.close()


def test_no_usable_checkpoint_is_one_error_naming_it(tmp_path):
  ck = checkpoint.Checkpointer(str(tmp_path), max_to_keep=1)
  ck.save(1, TREE)
  ck.close()
  _flip_byte(_largest_file(str(tmp_path / "checkpoints" / "1")))
  with pytest.raises(records.RecordError, match=r"checkpoints/1.*contents differ"):
    checkpoint.Checkpointer(str(tmp_path)).restore_latest(TREE)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_saved_variables_are_named(tmp_path, damage):
  path = str(tmp_path / "teacher" / "best")
  checkpoint.save_variables(path, jax.tree.map(np.asarray, TREE))
  victim = _largest_file(path)
  DAMAGE[damage](victim)
  with pytest.raises(checksums.DamagedCheckpointError) as e:
    checkpoint.load_variables(path)
  assert str(e.value).startswith(victim + ": ")


def test_older_checkpoints_without_manifests_still_load(tmp_path):
  path = str(tmp_path / "teacher" / "best")
  checkpoint.save_variables(path, jax.tree.map(np.asarray, TREE))
  os.remove(os.path.join(tmp_path, "teacher", "checksums", "best.json"))
  np.testing.assert_array_equal(checkpoint.load_variables(path)["w"], TREE["w"])


# ------------------------------------------------------------------------------------------------ in a run
def _latest_state(workdir):
  ck = checkpoint.Checkpointer(os.path.join(workdir, "teacher"))
  tree = ck.restore_latest_as_saved()
  ck.close()
  return jax.tree.map(np.asarray, tree["state"])


def test_damaged_checkpoint_and_cut_journal_line_resume_exactly(data_dir, tmp_path, capfd, smoke_context):
  """Stopped at step 4, then the latest checkpoint truncated and the journal's last
  line cut short: the resumed run names both, resumes from step 3 and ends equal to an uninterrupted run."""
  config = smoke_config(data_dir)  # checkpoints at the end of each epoch (step 3) and where it stops (step 4)
  full, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
  context = smoke_context  # the smoke teacher's programs, compiled once
  loop.run_pipeline(config, full, ("teacher",), context=context)
  checkpoint.check_or_write_config(resumed, config)
  assert loop.run_stage("teacher", config, resumed, stop_after_steps=4, context=context) == {"stopped_at": 4}
  victim = _largest_file(os.path.join(resumed, "teacher", "checkpoints", "4"))
  _truncate(victim)
  cut = json.dumps(loop.read_metrics(full)[-1])[:50]
  with open(os.path.join(resumed, "metrics.jsonl"), "a") as f:
    f.write(cut)
  capfd.readouterr()
  loop.run_pipeline(config, resumed, ("teacher",), context=context)
  err = capfd.readouterr().err
  assert victim in err and "step 3" in err
  assert open(os.path.join(resumed, "metrics.jsonl.corrupt-1")).read() == cut
  a, b = _latest_state(full), _latest_state(resumed)
  assert int(a["step"]) == int(b["step"]) == 6
  for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert [r["epoch"] for r in loop.read_metrics(resumed)] == [1, 2]  # records complete
  assert [r["val"] for r in loop.read_metrics(full)] == [r["val"] for r in loop.read_metrics(resumed)]

  # The finished teacher as another run's input: a damaged best/ is an error naming the file, nothing written.
  best = os.path.join(full, "teacher", "best")
  saved = jax.tree.map(np.asarray, checkpoint.load_variables(best))
  victim = _largest_file(best)
  original = open(victim, "rb").read()
  _zero_64(victim)
  student = smoke_config(data_dir, teacher_workdir=full)
  with pytest.raises(checksums.DamagedCheckpointError) as e:
    loop.run_pipeline(student, str(tmp_path / "student"), ("student",), context=context)
  assert str(e.value).startswith(victim + ": ")
  assert not os.path.exists(tmp_path / "student")

  # In its own workdir, a damaged or missing best/ is not taken as done: the stage runs again from its last
  # checkpoint and writes the same variables.
  result = records.read_dict(os.path.join(full, "teacher", "result.json"))
  assert not loop.stage_done(full, "teacher")
  assert loop.run_pipeline(config, full, ("teacher",), context=context)["teacher"]["members"] == result["members"]
  assert open(_largest_file(os.path.join(full, "teacher", "damaged", "best.1")), "rb").read() != original
  jax.tree.map(np.testing.assert_array_equal, checkpoint.load_variables(best), saved)
  shutil.rmtree(best)
  assert not loop.stage_done(full, "teacher")
  capfd.readouterr()
  loop.run_pipeline(config, full, ("teacher",), context=context)
  assert "teacher/best is missing" in capfd.readouterr().err
  jax.tree.map(np.testing.assert_array_equal, checkpoint.load_variables(best), saved)


def test_report_names_an_unreadable_result(tmp_path):
  run = tmp_path / "runs" / records.run_name({"method": "pkdot", "data.fold": 0})
  (run / "student").mkdir(parents=True)
  (run / "config.json").write_text(json.dumps({"data": {"fold": 0}, "model": {"task": "classification"}}))
  (run / "student" / "result.json").write_text('{"members": [')
  with pytest.raises(records.RecordError) as e:
    results.collect(str(tmp_path))
  assert str(e.value).startswith(str(run / "student" / "result.json"))


def test_checkpoint_without_manifest_is_restored_unverified(tmp_path, capfd):
  ck = checkpoint.Checkpointer(str(tmp_path))
  ck.save(1, TREE)
  ck.close()
  os.remove(tmp_path / "checksums" / "checkpoint-1.json")  # as an older version, or a stop before the manifest
  restored = checkpoint.Checkpointer(str(tmp_path)).restore_latest(TREE)
  np.testing.assert_array_equal(restored["w"], TREE["w"])
  assert "no checksum manifest" in capfd.readouterr().err
