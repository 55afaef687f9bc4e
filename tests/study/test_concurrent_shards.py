"""Sweep shards started together: two `pkdot sweep --shard=i/2` processes share one workdir and an empty data
dir; four runs (video-only students) need one teacher. Both exit 0, the shared teacher is trained once (its
journal has one record per epoch), and every run's records and results equal those of a single process (run
first, in the test process: the shards load its programs from the test session's compilation cache; its data
is then deleted for the shards to build again). Bounded time; every process is reaped."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from pkdot_jax.configs import load_module
from pkdot_jax.study import sweep
from pkdot_jax.train import loop

TIMEOUT_S = 1500  # bounded; a few minutes on an idle 2-core machine
SWEEP = """
def get_sweep():
  return {{"config": "synthetic:smoke", "base": {{"data.data_dir": {data_dir!r}, "num_devices": 1,
                                                "pipeline": ("teacher", "student"),
                                                "model.student.mode": "video_only"}},
          "grid": {{"distill.weight": [0.3, 0.6, 0.9, 1.2]}}, "progress": False}}
"""


def _members(path):
  with open(path) as f:
    return json.load(f)["members"]


def _records(workdir):
  return [(r["stage"], r["epoch"], r["train_loss"], r["val"], r.get("test")) for r in loop.read_metrics(workdir)]


@pytest.mark.slow
def test_two_shards_at_once_equal_one_process(tmp_path):
  sweep_file = tmp_path / "sweep.py"
  sweep_file.write_text(SWEEP.format(data_dir=str(tmp_path / "tfds")))
  spec = load_module(str(sweep_file), "concurrent_sweep").get_sweep()
  single = tmp_path / "single"
  sweep.run_sweep(spec, str(single))  # one process (it compiles every program the shards run)
  shutil.rmtree(tmp_path / "tfds")  # the shards start from an empty data dir
  root = tmp_path / "sharded"
  cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
  logs = [open(tmp_path / f"shard{i}.log", "w") for i in range(2)]
  procs = [subprocess.Popen([sys.executable, "-m", "pkdot_jax.main", "sweep", f"--sweep={sweep_file}",
                             f"--workdir={root}", f"--shard={i}/2", f"--compilation_cache={cache}"],
                            stdout=logs[i], stderr=subprocess.STDOUT) for i in range(2)]
  try:
    codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait(timeout=30)
    for log in logs:
      log.close()
  outputs = [(tmp_path / f"shard{i}.log").read_text() for i in range(2)]
  assert codes == [0, 0], "\n".join(o[-3000:] for o in outputs)

  names = [name for name, _ in sweep.expand(spec)]
  teachers = os.listdir(root / "teachers")
  assert len(teachers) == 1 and os.listdir(single / "teachers") == teachers
  # The teacher's member is named after the first run that trained it (its weight is not the teacher's).
  teacher = [_members(d / "teachers" / teachers[0] / "teacher" / "result.json") for d in (root, single)]
  assert [[{k: v for k, v in m.items() if k not in ("member", "weight")} for m in t] for t in teacher] == \
      [[{k: v for k, v in m.items() if k not in ("member", "weight")} for m in teacher[1]]] * 2
  # Trained once: one record per (stage, epoch) in the shared teacher's journal.
  lines = [json.loads(line) for line in open(root / "teachers" / teachers[0] / "metrics.jsonl") if line.strip()]
  assert len(lines) == len({(r["stage"], r["epoch"]) for r in lines}) == 1
  assert _records(root / "teachers" / teachers[0]) == _records(single / "teachers" / teachers[0])
  for name in names:
    assert _members(root / "runs" / name / "student" / "result.json") == \
        _members(single / "runs" / name / "student" / "result.json"), name
    assert _records(root / "runs" / name) == _records(single / "runs" / name), name
  assert not [d for _, dirs, _ in os.walk(tmp_path / "tfds") for d in dirs if "incomplete" in d]
