"""One process of the multi-process training test: `python multiprocess_worker.py PORT NUM_PROCESSES
PROCESS_ID DATA_DIR WORKDIR`. Each process has 2 fake CPU devices; process 0 coordinates on 127.0.0.1:PORT.
Trains the smoke pipeline with an MT-PKDOT student over two member seeds (test_multiprocess.py)."""

# The launch line of every process of a real job is the CLI's:
#   pkdot train --config=... --workdir=... --coordinator_address=HOST:PORT --num_processes=N --process_id=I

import faulthandler
import os
import signal
import sys


def config_for(data_dir: str, num_devices: int | None = None):
  from train_helpers import smoke_config

  return smoke_config(data_dir, **{
      "num_devices": num_devices, "seeds": (0, 1), "model.multitask": True, "distill.mt_pkdot": True,
      "distill.task_weight": 0.8, "distill.weight": 0.2, "stages.teacher.num_epochs": 1, "batch_size": 16,
      "eval_batch_size": 12, "stages.student.num_epochs": 2, "checkpoint.every_steps": 0,
      "optimizer.name": "sgd", "cache_teacher": True, "model.input_shapes.video": (4, 16, 16, 3),
      "data.overrides": {"num_subjects": 10, "samples_per_subject": 8, "num_frames": 4, "height": 16,
                         "width": 16}})


def _die_with_parent() -> None:
  """Linux: this process is killed when the test that started it dies (an interrupted pytest leaves no
  workers behind); elsewhere the 600 s limit below still ends it."""
  try:
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
  except (OSError, AttributeError):
    pass


def main(port: str, num_processes: str, process_id: str, data_dir: str, workdir: str) -> None:
  _die_with_parent()
  faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where a hung process is
  faulthandler.dump_traceback_later(600, exit=True)  # a hung process shows its stacks in the log and exits
  from pkdot_jax.train import parallel
  parallel.initialize_distributed(f"127.0.0.1:{port}", int(num_processes), int(process_id))
  from pkdot_jax.train import loop
  loop.run_pipeline(config_for(data_dir), workdir)


if __name__ == "__main__":
  # Before jax is imported: 2 devices, plus the test session's other flags (passed without its device count).
  os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2 " + os.environ.get("XLA_FLAGS", "")).strip()
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  main(*sys.argv[1:])
