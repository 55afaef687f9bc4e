"""Command line: `pkdot COMMAND [flags]` (also `python -m pkdot_jax.main`).

Commands:
  train    run pipeline stages of one experiment config in a workdir (the default command)
             pkdot train --config=synthetic --workdir=runs/syn [--stages=teacher,tnet]
                         [--config.distill.method=pkt --config.seeds=0,1]
           stages: pretrain_video, pretrain_privileged, teacher, tnet, student (default: config.pipeline);
           re-running the same command resumes; a finished stage is skipped.
  demo     the main job on the embedded synthetic dataset: teacher, T-Net, and every distillation method over
           subject-disjoint folds and seeds; prints a table and writes a report folder
             pkdot demo [--quick | --all] [--workdir=runs/demo]
  sweep    an ablation grid, one workdir per run, resumable and shardable
             pkdot sweep --sweep=experiments/sweeps/NAME.py --workdir=runs/NAME [--shard=0/4]
  report   rebuild tables and plots from a sweep or demo workdir
             pkdot report runs/NAME

Multi-host: pass --coordinator_address/--num_processes/--process_id (or run under SLURM / Open MPI, or set
PKDOT_COORDINATOR, PKDOT_NUM_PROCESSES, PKDOT_PROCESS_ID); every process runs the same command.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags
from ml_collections import config_flags

COMMANDS = ("train", "demo", "sweep", "report")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (a get_config() module).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, reports).")
flags.DEFINE_list("stages", None, "Stages to run (default: config.pipeline). One of: pretrain_video, "
                  "pretrain_privileged, teacher, tnet, student.")
flags.DEFINE_string("sweep", None, "Sweep file (a get_sweep() module) for `pkdot sweep`.")
flags.DEFINE_string("shard", "0/1", "This process's share of a sweep grid, i/n.")
flags.DEFINE_bool("quick", False, "demo: the small smoke version (fewer subjects, epochs, folds, seeds).")
flags.DEFINE_bool("all", False, "demo: the full comparison (every applicable registry loss, each with its "
                  "distillation weight chosen on validation subjects among three values).")
flags.DEFINE_list("methods", None, "demo: a subset of the methods (video_only is always needed).")
flags.DEFINE_string("compilation_cache", os.environ.get("PKDOT_COMPILATION_CACHE",
                                                         os.path.join("~", ".cache", "pkdot-jax", "xla")),
                    "Persistent XLA compilation cache (shared by every run on this machine; '' turns it off). "
                    "A second run of the same programs loads them instead of compiling (tens of seconds on "
                    "a small CPU).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0.")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's id.")


def _usage() -> str:
  return __doc__


def main(argv: list[str]) -> None:
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # orbax logs every save and restore at INFO
  positional = argv[1:]
  command = positional[0] if positional else "train"
  if command not in COMMANDS:
    raise app.UsageError(f"unknown command {command!r}; commands are {', '.join(COMMANDS)}\n\n{_usage()}")

  if FLAGS.compilation_cache:
    import jax
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

  from pkdot_jax.train import parallel
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)

  if command == "train":
    if FLAGS.config is None or FLAGS.workdir is None:
      raise app.UsageError("train needs --config and --workdir")
    from pkdot_jax.train import loop
    results = loop.run_pipeline(FLAGS.config, FLAGS.workdir, tuple(FLAGS.stages) if FLAGS.stages else None)
    from pkdot_jax.study import report
    print(report.stage_table(results))
  elif command == "demo":
    from pkdot_jax.study import demo
    kwargs = {"methods": tuple(FLAGS.methods)} if FLAGS.methods else {}
    demo.main(workdir=FLAGS.workdir or "runs/demo", quick=FLAGS.quick, full=FLAGS.all, **kwargs)
  elif command == "sweep":
    if FLAGS.sweep is None or FLAGS.workdir is None:
      raise app.UsageError("sweep needs --sweep and --workdir")
    from pkdot_jax.study import sweep
    sweep.main(FLAGS.sweep, FLAGS.workdir, FLAGS.shard)
  elif command == "report":
    workdir = positional[1] if len(positional) > 1 else FLAGS.workdir
    if workdir is None:
      raise app.UsageError("report needs a workdir: pkdot report WORKDIR")
    from pkdot_jax.study import report
    report.main(workdir)


def _resolve_config_names(argv: list[str]) -> list[str]:
  """`--config=synthetic:demo` (a built-in config's name) -> the file's path, which the flag parser loads."""
  from pkdot_jax import configs

  out = list(argv)
  for i, arg in enumerate(out):
    if arg.startswith("--config="):
      value = arg[len("--config="):]
      if value.partition(":")[0] in configs.BUILTIN:
        out[i] = "--config=" + configs.resolve(value)
    elif arg == "--config" and i + 1 < len(out) and out[i + 1].partition(":")[0] in configs.BUILTIN:
      out[i + 1] = configs.resolve(out[i + 1])
  return out


def run() -> None:
  """Console-script entry point (`pkdot`)."""
  sys.argv = _resolve_config_names(sys.argv)
  if any(a in ("-h", "--help", "help") for a in sys.argv[1:2]):
    print(_usage())
  app.run(main)


if __name__ == "__main__":
  run()
