"""Which report `pkdot report WORKDIR` and the end of `pkdot sweep` build (the command line chooses: a protocol
study's workdir, a demo's, any other a sweep's), and the run timer's compile-event bookkeeping."""

import os
import subprocess
import sys

import jax
import pytest

from pkdot_jax.study import timing
from pkdot_jax.train import records

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Every report builder and the sweep runner replaced by one that names itself: the choice alone is tested. One
# process runs the command lines given, one per argument (words separated by spaces).
CHOOSER = """
import sys
from absl import flags
from pkdot_jax import main
from pkdot_jax.study import demo, protocols, report, sweep
protocols.show_report = lambda workdir: print("BUILT protocols", workdir)
demo.show_report = lambda workdir: print("BUILT demo", workdir)
report.main = lambda workdir: print("BUILT sweep", workdir)
sweep.main = lambda path, root, shard: print("RAN shard", shard) or shard == "0/1"
for command in sys.argv[1:]:
  print("COMMAND", command)
  try:
    main.run(["pkdot", *command.split(" ")])
  except SystemExit as e:
    assert not e.code, e.code
  flags.FLAGS.unparse_flags()
"""


def _pkdot(*commands: str) -> list[list[str]]:
  """What each command line built or ran, in order."""
  env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", CHOOSER, *commands], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  out: list[list[str]] = []
  for line in proc.stdout.splitlines():
    if line.startswith("COMMAND"):
      out.append([])
    elif line.startswith(("BUILT", "RAN")):
      out[-1].append(line)
  assert len(out) == len(commands), proc.stdout
  return out


def test_the_command_line_chooses_the_report_of_the_workdir(tmp_path):
  plain, demo_dir, protocols_dir = (str(tmp_path / name) for name in ("sweep", "demo", "protocols"))
  for path in (plain, demo_dir, protocols_dir):
    os.makedirs(path)
  records.write_json(records.demo_file(demo_dir, "demo"), {"mode": "quick"})
  records.write_json(os.path.join(protocols_dir, "protocols.json"), {"mode": "quick"})
  sweep_file = tmp_path / "grid.py"
  sweep_file.write_text("def get_sweep():\n  return {}\n")
  assert _pkdot(f"report {plain}", f"report {demo_dir}", f"report --workdir={protocols_dir}",
                f"sweep --sweep={sweep_file} --workdir={plain}",
                f"sweep --sweep={sweep_file} --workdir={demo_dir}",
                f"sweep --sweep={sweep_file} --workdir={plain} --shard=1/2") == [
      [f"BUILT sweep {plain}"], [f"BUILT demo {demo_dir}"], [f"BUILT protocols {protocols_dir}"],
      ["RAN shard 0/1", f"BUILT sweep {plain}"],  # the whole grid: its report at the end
      ["RAN shard 0/1", f"BUILT demo {demo_dir}"],
      ["RAN shard 1/2"]]  # one shard of two: no report before the others are done


def _started(root: str, name: str) -> None:
  """What a run that started now leaves: its run_info.json (the timer records runs newer than its start)."""
  os.makedirs(records.run_dir(root, name))
  records.write_json(records.run_info_path(records.run_dir(root, name)), [{}])


def test_run_timer_counts_compile_events_while_open_and_only_its_own(tmp_path):
  root = str(tmp_path)
  compile_event = timing.COMPILE_EVENTS[2]
  jax.monitoring.record_event_duration_secs(compile_event, 100.0)  # before any timer: nobody counts it
  with timing.RunTimer(root, "teachers") as outer:
    outer("method=finished_before")  # no run_info.json newer than the timer's start: not recorded
    jax.monitoring.record_event_duration_secs(compile_event, 2.5)
    jax.monitoring.record_event_duration_secs("/jax/not/a/compile/event", 7.0)
    with timing.RunTimer(root, "students") as inner:
      jax.monitoring.record_event_duration_secs(compile_event, 0.5)
      _started(root, "method=pkdot")
      inner("method=pkdot")
    _started(root, "method=task_only")
    outer("method=task_only")
  jax.monitoring.record_event_duration_secs(compile_event, 40.0)  # after both: counted by neither
  assert (outer.compile_seconds, inner.compile_seconds) == (3.0, 0.5)
  recorded = timing.read_timing(root)
  assert list(recorded) == [("students", "method=pkdot"), ("teachers", "method=task_only")]
  assert recorded[("students", "method=pkdot")]["compile_s"] == 0.5
  assert recorded[("teachers", "method=task_only")]["compile_s"] == 3.0  # since its start: 2.5 + 0.5
  assert recorded[("teachers", "method=task_only")]["wall_s"] >= 0.0


def test_run_timer_stops_listening_when_its_block_raises(tmp_path):
  timer = timing.RunTimer(str(tmp_path), "students")
  with pytest.raises(KeyboardInterrupt):
    with timer:
      raise KeyboardInterrupt
  jax.monitoring.record_event_duration_secs(timing.COMPILE_EVENTS[0], 1.0)
  assert timer.compile_seconds == 0.0
