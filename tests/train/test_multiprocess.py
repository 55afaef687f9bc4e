"""Two local processes (127.0.0.1, a free port, 2 fake CPU devices each, gloo collectives) train the whole
pipeline -- multitask teacher, T-Net, MT-PKDOT student over two member seeds, teacher cache -- and equal one
process on 4 devices (trained in the test process while the two processes run). Process 1 is killed (SIGKILL)
once the student has checkpointed its first epoch, process 0 after it (as a cluster requeue would), both are
restarted and resume. The processes compile without a persistent compilation cache, as `pkdot train` runs a
multi-process job (requeued processes that loaded the first run's programs from one stalled in their first
step). Every process is always reaped."""

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from multiprocess_worker import config_for
from pkdot_jax.train import checkpoint, loop

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multiprocess_worker.py")
TIMEOUT_S = 900  # bounded; a few minutes on a 2-core machine


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(data_dir, workdir, logs):
  port = _free_port()
  # The worker sets its own device count and keeps the session's other XLA flags (the single-process reference
  # compiles with them). No persistent compilation cache, as in a multi-process `pkdot train`.
  env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT_CACHE"))}
  env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                              if not f.startswith("--xla_force_host_platform_device_count"))
  return [subprocess.Popen([sys.executable, WORKER, str(port), "2", str(i), str(data_dir), str(workdir)],
                           stdout=logs[i], stderr=subprocess.STDOUT, env=env) for i in range(2)]


def _wait(procs, deadline, stop, until=None):
  """Until every process has exited (True: all with status 0) or `until()` holds; fails at the deadline or
  when `stop` is set (the test failed elsewhere)."""
  while time.monotonic() < deadline and not stop.is_set():
    if until is not None and until():
      return False
    codes = [p.poll() for p in procs]
    if all(c is not None for c in codes):
      return all(c == 0 for c in codes)
    if any(c not in (None, 0) for c in codes):
      return False
    time.sleep(0.5)
  raise TimeoutError("the multi-process run did not finish in time")


def _kill(procs):
  for p in procs:
    if p.poll() is None:
      p.send_signal(signal.SIGKILL)
  for p in procs:
    p.wait(timeout=30)


def _run_killed_and_resumed(data_dir, tmp_path, live, stop):
  """The two-process job: started, killed once the student has checkpointed, restarted; returns its workdir.
  `live` holds the processes running now (the caller reaps them whatever happens)."""
  multi = tmp_path / "multi"
  logs = [open(tmp_path / f"process{i}.log", "w") for i in range(2)]
  deadline = time.monotonic() + TIMEOUT_S
  student_checkpoints = multi / "student" / "checkpoints"
  try:
    live[:] = _launch(data_dir, multi, logs)
    checkpointed = lambda: student_checkpoints.exists() and any(n.isdigit() for n in os.listdir(student_checkpoints))
    finished = _wait(live, deadline, stop, until=checkpointed)
    assert not finished and checkpointed(), "the first run ended before the student checkpointed"
    _kill(live[1:])  # one process dies ...
    _kill(live)      # ... and the job is requeued: every process restarts
    live[:] = _launch(data_dir, multi, logs)
    assert _wait(live, deadline, stop), "the resumed run failed: " + (tmp_path / "process0.log").read_text()[-3000:]
  finally:
    for log in logs:
      log.close()
  return multi


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_after_a_kill(data_dir, tmp_path):
  live: list[subprocess.Popen] = []
  stop = threading.Event()
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    job = pool.submit(_run_killed_and_resumed, data_dir, tmp_path, live, stop)
    try:
      single = str(tmp_path / "single")
      loop.run_pipeline(config_for(data_dir, num_devices=4), single)  # this process's first 4 fake devices
      multi = job.result(timeout=TIMEOUT_S)
    finally:
      stop.set()  # (the job's thread starts the processes: it lives until they are reaped or killed here)
      concurrent.futures.wait([job])
      _kill(live)

  student_records = [r for r in loop.read_metrics(str(multi)) if r["stage"] == "student"]
  assert [r["epoch"] for r in student_records] == [1, 2]  # epoch 1 from before the kill, epoch 2 resumed
  for stage in ("teacher", "tnet", "student"):
    expected = json.load(open(os.path.join(single, stage, "result.json")))["members"]
    got = json.load(open(multi / stage / "result.json"))["members"]
    for e, g in zip(expected, got, strict=True):
      assert g["best_epoch"] == e["best_epoch"]
      for split in ("val", "test"):
        for key, value in e[split].items():
          if isinstance(value, float):
            assert g[split][key] == pytest.approx(value, rel=1e-5, abs=1e-6), (stage, split, key)
          else:  # counts, confusion matrices: every example scored exactly once, the same predictions
            assert g[split][key] == value, (stage, split, key)
    a = checkpoint.load_variables(os.path.join(single, stage, "best"))
    b = checkpoint.load_variables(str(multi / stage / "best"))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-4, atol=1e-5)
  # One writer: every record once (the kill came after the student's epoch-1 record and checkpoint).
  lines = [json.loads(line) for line in open(multi / "metrics.jsonl") if line.strip()]
  assert len(lines) == len({(r["stage"], r["epoch"]) for r in lines}) == 4
