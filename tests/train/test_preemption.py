"""Preemption: SIGTERM / SIGINT mid-stage stop after the step in progress with a checkpoint of it, the command
exits 143 / 130 with one line, and re-running it ends where an uninterrupted run ends (the interrupted epoch's
train loss included). Signals are sent while the trainer is at a known step: in-process from inside the data
iterator, or to a `pkdot train` subprocess paused before a known batch (no sleeps); subprocesses are reaped."""

import json
import os
import selectors
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from pkdot_jax.train import checkpoint, loop, preemption
from pkdot_jax.train import input as input_lib
from train_helpers import smoke_config

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pause_worker.py")
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory, smoke_context):
  """The teacher stage (2 epochs of 3 steps) run without interruption: (config, workdir). Its step metrics
  reach the host once per epoch (log_every=10): reading the signal flag adds no device sync per step."""
  config = smoke_config(data_dir)
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  windows = []
  with pytest.MonkeyPatch.context() as patch:
    original = loop._check_window
    patch.setattr(loop, "_check_window", lambda window, *args: windows.append(len(window)) or original(window, *args))
    loop.run_pipeline(config, workdir, ("teacher",), context=smoke_context)
  assert config.log_every == 10 and windows == [3, 3]
  return config, workdir


def _latest(workdir):
  ck = checkpoint.Checkpointer(os.path.join(workdir, "teacher"))
  step, tree = ck.latest_step(), jax.tree.map(np.asarray, ck.restore_latest_as_saved())
  ck.close()
  return step, tree


def _assert_same_run(workdir, reference):
  """Same metrics records (train loss of every epoch, val and test), same result, same final state."""
  records = [(r["epoch"], r["train_loss"], r["val"], r["test"]) for r in loop.read_metrics(workdir)]
  expected = [(r["epoch"], r["train_loss"], r["val"], r["test"]) for r in loop.read_metrics(reference)]
  assert records == expected
  result, expected_result = (json.load(open(os.path.join(d, "teacher", "result.json"))) for d in (workdir, reference))
  assert result["members"] == expected_result["members"]
  (step, tree), (expected_step, expected_tree) = _latest(workdir), _latest(reference)
  assert step == expected_step == 6
  for a, b in zip(jax.tree.leaves(tree["state"]), jax.tree.leaves(expected_tree["state"]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _signal_before_batch(monkeypatch, batch_number, signum, counter):
  """Makes the trainer's data iterator send `signum` to this process just before batch `batch_number` (from 1),
  i.e. while step `batch_number - 1` is done and the next one is about to run; counts the batches handed out."""
  original = input_lib.Data.train_batches

  def train_batches(self, *args, **kwargs):
    for batch in original(self, *args, **kwargs):
      counter.append(1)
      if len(counter) == batch_number:
        os.kill(os.getpid(), signum)
      yield batch
  monkeypatch.setattr(input_lib.Data, "train_batches", train_batches)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_epoch_saves_the_step_and_resume_is_exact(uninterrupted, smoke_context, tmp_path, monkeypatch,
                                                             signum):
  config, reference = uninterrupted
  workdir = str(tmp_path / "run")
  batches = []
  _signal_before_batch(monkeypatch, 2, signum, batches)  # mid-epoch 1: after step 1, before step 2
  with pytest.raises(preemption.Preempted, match=r"teacher step 2 of 6 saved in .*teacher/checkpoints") as e:
    loop.run_pipeline(config, workdir, ("teacher",), context=smoke_context)
  assert e.value.exit_status == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum]
  assert len(batches) == 2  # the step in progress was finished, no further one started
  assert _latest(workdir)[0] == 2  # ... and saved: no step lost
  assert not os.path.exists(os.path.join(workdir, "teacher", "result.json"))
  assert signal.getsignal(signum) is not preemption._handler  # the handlers are removed again

  monkeypatch.undo()
  resumed = []
  _signal_before_batch(monkeypatch, 0, signum, resumed)  # counts only
  loop.run_pipeline(config, workdir, ("teacher",), context=smoke_context)
  assert len(resumed) == 4  # steps 3..6: nothing trained twice
  _assert_same_run(workdir, reference)  # epoch 1's train loss covers its steps before the signal too


def test_checkpoint_saved_without_the_epoch_loss_still_resumes(uninterrupted, smoke_context, tmp_path):
  """A mid-epoch checkpoint written by a version that did not save the epoch's losses resumes to the same
  final state (that epoch's train loss then averages only the steps after the resume, as that version did)."""
  config, reference = uninterrupted
  workdir = str(tmp_path / "run")
  loop.run_stage("teacher", config, workdir, stop_after_steps=2, context=smoke_context)
  ck = checkpoint.Checkpointer(os.path.join(workdir, "teacher"))
  tree = ck.restore_latest_as_saved()
  del tree["epoch_loss"]
  ck.latest.delete(2)
  ck.save(2, tree, force=True)
  ck.close()
  assert checkpoint.Checkpointer(os.path.join(workdir, "teacher")).saved_keys() == {"state", "best"}
  loop.run_stage("teacher", config, workdir, context=smoke_context)
  (step, tree), (_, expected) = _latest(workdir), _latest(reference)
  assert step == 6
  for a, b in zip(jax.tree.leaves(tree["state"]), jax.tree.leaves(expected["state"]), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_signal_at_an_epoch_end_stops_before_the_next_epoch(uninterrupted, smoke_context, tmp_path, monkeypatch):
  config, reference = uninterrupted
  workdir = str(tmp_path / "run")
  batches = []
  _signal_before_batch(monkeypatch, 3, signal.SIGTERM, batches)  # the last step of epoch 1
  with pytest.raises(preemption.Preempted, match="teacher step 3 of 6"):
    loop.run_pipeline(config, workdir, ("teacher",), context=smoke_context)
  assert len(batches) == 3 and _latest(workdir)[0] == 3
  assert [r["epoch"] for r in loop.read_metrics(workdir)] == [1]  # the epoch's record was written before
  monkeypatch.undo()
  loop.run_pipeline(config, workdir, ("teacher",), context=smoke_context)
  _assert_same_run(workdir, reference)


def test_second_ctrl_c_aborts_and_a_late_signal_still_stops():
  previous = signal.getsignal(signal.SIGINT)
  with pytest.raises(KeyboardInterrupt):
    with preemption.handling():
      os.kill(os.getpid(), signal.SIGINT)
      assert preemption.requested() == signal.SIGINT  # the first one only asks
      os.kill(os.getpid(), signal.SIGINT)  # the second one aborts
      pytest.fail("not aborted")
  assert signal.getsignal(signal.SIGINT) is previous and preemption.requested() is None
  # A signal after the last check (the work finished) is not swallowed: leaving the block raises.
  with pytest.raises(preemption.Preempted, match="after the work in progress had finished") as e:
    with preemption.handling():
      os.kill(os.getpid(), signal.SIGTERM)
  assert e.value.exit_status == 143


def _readline(proc, deadline_s):
  """The next stdout line of `proc`, waiting at most `deadline_s` (no sleep: select on the pipe)."""
  with selectors.DefaultSelector() as selector:
    selector.register(proc.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=deadline_s):
      raise TimeoutError("the worker printed nothing in time")
  return proc.stdout.readline()


def _go(proc, deadline_s):
  """Lets a worker started with PAUSE_AT_BATCH=start run its command once it has printed `ready`."""
  assert _readline(proc, deadline_s).strip() == "ready"
  proc.stdin.write("go\n")
  proc.stdin.flush()


def test_pkdot_train_sigterm_exits_143_and_the_rerun_matches(uninterrupted, tmp_path):
  """The command as a user runs it: SIGTERM from outside while step 4 (epoch 2) is about to run; meanwhile a
  second `pkdot train` into the same workdir is refused (exit 2) naming the first. The second command and the
  re-run start with the first (their imports overlap its training) and run when due."""
  config, reference = uninterrupted
  workdir = str(tmp_path / "run")
  args = ["train", "--config=synthetic:smoke", f"--workdir={workdir}", "--stages=teacher",
          f"--config.data.data_dir={config.data.data_dir}", "--config.num_devices=1",
          "--config.stages.teacher.num_epochs=2",
          f"--compilation_cache={os.environ.get('JAX_COMPILATION_CACHE_DIR', '')}"]
  proc, second, rerun = (subprocess.Popen([sys.executable, WORKER, pause, *args], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                         for pause in ("4", "start", "start"))
  try:
    assert _readline(proc, TIMEOUT_S).strip() == "paused"
    # The same command again while the first one trains: refused in one line naming the live holder.
    _go(second, TIMEOUT_S)
    _, second_stderr = second.communicate(timeout=TIMEOUT_S)
    assert second.returncode == 2, second_stderr[-3000:]
    assert second_stderr.strip().splitlines()[-1].startswith(
        f"pkdot: error: workdir {workdir} is in use by pid {proc.pid} on host "), second_stderr[-3000:]
    assert "Traceback" not in second_stderr
    proc.send_signal(signal.SIGTERM)
    proc.stdin.write("go\n")
    proc.stdin.flush()
    _, stderr = proc.communicate(timeout=TIMEOUT_S)
    assert proc.returncode == 143, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("pkdot: stopped by SIGTERM: teacher step 4 of 6 saved in ") and \
        last.endswith("run the same command again to resume from it (exit status 143)"), stderr[-3000:]
    assert _latest(workdir)[0] == 4

    _go(rerun, TIMEOUT_S)
    _, rerun_stderr = rerun.communicate(timeout=TIMEOUT_S)
    assert rerun.returncode == 0, rerun_stderr[-3000:]
  finally:
    for p in (proc, second, rerun):
      if p.poll() is None:
        p.kill()
      p.wait(timeout=60)
  _assert_same_run(workdir, reference)
