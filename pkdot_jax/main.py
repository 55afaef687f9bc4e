"""Command line: `pkdot COMMAND [flags]` (also `python -m pkdot_jax.main`); `train` when no command is named.

Each command declares its flags once, in `COMMANDS`: parsing, `pkdot --help`, `pkdot COMMAND --help` and `pkdot
help COMMAND` come from those declarations, and a flag of another command is refused naming that command. A
command with `--config` takes `--config.FIELD=VALUE` overrides (ml_collections: typed by the field; the config
is locked, so an unknown field is an error).

Errors: an `errors.UserError` (a usage error here, the schema's `ConfigError`, a missing file the library names,
a damaged run record, a workdir in use by another process, ...) prints one line `pkdot: error: ...` and exits
with status 2; `--debug` (or PKDOT_DEBUG=1) prints its traceback first. Any other exception is a bug and keeps
its traceback (status 1). SIGTERM / SIGINT while a stage trains: a checkpoint of the step, then exit status 143 /
130 (`train/preemption.py`); re-running resumes. Progress goes to stderr as --verbosity says (console.py), results
to stdout.
"""

from __future__ import annotations

import os
import sys
import traceback

from pkdot_jax import commands, console
from pkdot_jax.commands import Command, Flag
from pkdot_jax.errors import UsageError, UserError
from pkdot_jax.train import preemption  # standard library and numpy only: the CLI starts fast

EXIT_USER_ERROR = 2


# ------------------------------------------------------------------------------------------------ commands
def _train(f, args: list[str]) -> None:
  from pkdot_jax.study import report
  from pkdot_jax.train import loop, programs
  stages, context = tuple(f.stages) if f.stages else None, programs.Context()
  loop.check_run(f.config, f.workdir, stages or tuple(f.config.pipeline), context)  # before anything is written
  console.info(f"pkdot: to watch it: tensorboard --logdir {f.workdir}")
  if f.config.get("teacher_workdir") and f.config.teacher_workdir != f.workdir:
    console.info(f"pkdot: its teacher-side stages: tensorboard --logdir {f.config.teacher_workdir}")
  print(report.stage_table(loop.run_pipeline(f.config, f.workdir, stages, context=context)))


def _demo(f, args: list[str]) -> None:
  methods = tuple(f.methods) if f.methods else None
  if f.protocols:
    if f.all:
      raise UsageError("--protocols runs the demo's default rows: it takes --quick, not --all")
    from pkdot_jax.study import protocols
    protocols.main(workdir=f.workdir or "runs/protocols", quick=f.quick, methods=methods)
    return
  from pkdot_jax.study import demo
  demo.main(workdir=f.workdir or "runs/demo", quick=f.quick, full=f.all, methods=methods)


def _sweep(f, args: list[str]) -> None:
  if not os.path.isfile(f.sweep):
    raise UsageError(f"--sweep={f.sweep}: no such file")
  from pkdot_jax.study import sweep
  if sweep.main(f.sweep, f.workdir, f.shard):  # a single shard: the whole grid, reported now
    _show_report(f.workdir)


def _report(f, args: list[str]) -> None:
  if not args and f.workdir is None:
    raise UsageError("report needs a workdir: pkdot report WORKDIR")
  _show_report(args[0] if args else f.workdir)


def _show_report(workdir: str) -> None:
  """A protocol study's or a demo's workdir gets its own report, any other the sweep's."""
  from pkdot_jax.study import demo, protocols, report
  if protocols.is_protocols(workdir):
    protocols.show_report(workdir)
  elif demo.is_demo(workdir):
    demo.show_report(workdir)
  else:
    report.main(workdir)


def _data(f, args: list[str]) -> None:
  from pkdot_jax.data import check
  check.run(f.config, progress=lambda text: print(f"pkdot data check: {text}", file=sys.stderr, flush=True))


_CONFIG = Flag("config", "config", "Experiment config: a built-in name (synthetic, biovid_binary, biovid_5class, "
               "affwild2_va) or a file with get_config(), optionally followed by :variant (e.g. synthetic:smoke).",
               metavar="NAME[:variant]", required=True)
_VERBOSITY = Flag("verbosity", "integer", "What is printed (progress on stderr, results on stdout): -1 errors and "
                  "results only; 0 + a line per stage and per epoch; 1 + progress bars; 2 + the libraries' INFO "
                  "logs.", console.DEFAULT, "N")
_DEBUG = Flag("debug", "bool", "Show the traceback of an error (also env PKDOT_DEBUG=1).", False)
_RUNTIME = (
    Flag("compilation_cache", "string", "Persistent XLA compilation cache, shared by every run on this machine "
         "('' turns it off; env PKDOT_COMPILATION_CACHE): a second run loads its programs instead of compiling.",
         os.environ.get("PKDOT_COMPILATION_CACHE", os.path.join("~", ".cache", "pkdot-jax", "xla")), "DIR"),
    Flag("coordinator_address", "string", "Multi-host: host:port of process 0 (env PKDOT_COORDINATOR; detected "
         "under SLURM / Open MPI). Every process runs the same command.", None, "HOST:PORT"),
    Flag("num_processes", "integer", "Multi-host: number of processes (env PKDOT_NUM_PROCESSES).", None, "N"),
    Flag("process_id", "integer", "Multi-host: this process's id (env PKDOT_PROCESS_ID).", None, "I"),
    _VERBOSITY, _DEBUG)

COMMANDS = {
    "train": Command(
        "run pipeline stages of one experiment config in a workdir (the default command)",
        "Re-running the same command resumes; a finished stage is skipped. The config is checked before anything "
        "is written; a workdir that holds a run of another config is refused.",
        ("pkdot train --config=synthetic --workdir=runs/syn --config.distill.method=pkt --config.seeds=0,1",
         "pkdot train --config=synthetic --workdir=runs/syn_rkd --stages=student --config.teacher_workdir=runs/syn "
         "--config.distill.method=rkd"),
        (_CONFIG, Flag("workdir", "string", "Run directory (config.json, checkpoints, metrics.jsonl, "
                       "<stage>/result.json).", metavar="DIR", required=True),
         Flag("stages", "list", "Stages to run, of pretrain_video, pretrain_privileged, teacher, tnet, student "
              "(default: config.pipeline).", metavar="a,b")) + _RUNTIME, _train),
    "demo": Command(
        "the main job on the embedded synthetic dataset: teacher, T-Net and every distillation method",
        "Trains over subject-disjoint folds and seeds, prints the comparison table and writes a report folder "
        "under the workdir. Re-running the same command skips the finished runs.",
        ("pkdot demo --quick", "pkdot demo --methods=video_only,task_only,pkdot --workdir=runs/demo3",
         "pkdot demo --protocols --workdir=runs/protocols"),
        (Flag("quick", "bool", "The small smoke version (fewer subjects, epochs, folds, seeds).", False),
         Flag("all", "bool", "The full comparison: every applicable registry loss, each with its distillation "
              "weight chosen on validation subjects among three values.", False),
         Flag("methods", "list", "A subset of the methods; it includes video_only and task_only, the two the "
              "others are compared with.", metavar="a,b"),
         Flag("protocols", "bool", "The protocol study: the demo's rows under subject-disjoint folds, the authors' "
              "clip-level folds with the best epoch on the test fold, and those with the authors' frozen student "
              "backbone.", False),
         Flag("workdir", "string", "Root of the demo's runs and report (default: runs/demo; with --protocols "
              "runs/protocols).", None, "DIR")) + _RUNTIME, _demo),
    "sweep": Command(
        "an ablation grid, one workdir per run, resumable and shardable",
        "Every process (or machine) given another --shard runs its share of the grid; run `pkdot report` once "
        "every shard is done (a single shard reports by itself).",
        ("pkdot sweep --sweep=experiments/sweeps/pkdot_ablation.py --workdir=runs/pkdot_ablation --shard=0/2",),
        (Flag("sweep", "string", "Sweep file (a module with get_sweep()).", metavar="FILE.py", required=True),
         Flag("workdir", "string", "Root of the sweep's runs (one directory per run).", metavar="DIR",
              required=True),
         Flag("shard", "string", "This process's share of the grid.", "0/1", "i/n")) + _RUNTIME, _sweep),
    "report": Command(
        "rebuild tables and plots from a sweep or demo workdir",
        "Reads the finished runs' files under WORKDIR and writes summary.md, summary.csv and plots there.",
        ("pkdot report runs/demo",),
        (Flag("workdir", "string", "The sweep or demo root, instead of the positional WORKDIR.", metavar="DIR"),
         _VERBOSITY, _DEBUG), _report, ("WORKDIR",)),
    "data": Command(
        "what the builder will find in a manual download, before preparing it",
        "Reads the download the way the builder will and prints the subjects, samples per class and per split of "
        "the configured folds, every file that would be skipped or refused with the reason, and the size of the "
        "prepared set. Writes nothing. Exit status 0 only when the set can be built as configured.",
        ("pkdot data check --config=biovid_binary --config.data.manual_dir=/data/biovid",),
        (_CONFIG, _DEBUG), _data, ("check",)),
}


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str]) -> None:
  """Parses `pkdot ARGS`, checks the required flags, sets up output and devices, runs the command."""
  name, f, args = commands.parse(COMMANDS, argv)
  commands.check_required(COMMANDS, name, f)
  from absl import flags, logging
  flags.FLAGS.mark_as_parsed()  # absl's own flags keep their defaults (its logging reads them)
  console.set_verbosity(f.verbosity if "verbosity" in f else console.DEFAULT)
  logging.set_verbosity(logging.INFO if console.verbosity() >= console.DEBUG else  # orbax logs saves at INFO
                        logging.WARNING if console.verbosity() >= console.STAGES else logging.ERROR)
  if "compilation_cache" in f:
    _setup_devices(f)
  COMMANDS[name].run(f, args)


def _setup_devices(f) -> None:
  """The persistent compilation cache (single-process jobs) and the multi-host connection."""
  if f.compilation_cache and (f.num_processes or int(os.environ.get("PKDOT_NUM_PROCESSES", "1"))) > 1:
    # A requeued two-process CPU job that loaded the first run's programs from the cache stalled after connecting
    # (and ran normally without it): multi-process jobs compile afresh.
    print("pkdot: multi-process job: the persistent compilation cache is off", file=sys.stderr)
  elif f.compilation_cache:
    import jax
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(f.compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  from pkdot_jax.train import parallel
  parallel.initialize_distributed(f.coordinator_address, f.num_processes, f.process_id)


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (`pkdot`): one line and status 2 for a user error, a traceback for a bug."""
  argv = list(sys.argv if argv is None else argv)
  debug = commands.debug_requested(argv)
  try:
    topic = commands.help_topic(COMMANDS, argv)
    if topic is not None:
      print(COMMANDS[topic].help(topic) if topic else commands.general_help(COMMANDS), end="")
      sys.exit(0)
    main(argv)
  except KeyboardInterrupt:
    if debug:
      raise
    print("pkdot: interrupted", file=sys.stderr)
    sys.exit(130)
  except preemption.Preempted as e:  # a signal stopped training after saving it
    print(f"pkdot: {e} (exit status {e.exit_status})", file=sys.stderr)
    sys.exit(e.exit_status)
  except UserError as e:
    if debug:
      traceback.print_exc()
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    print(f"pkdot: error: {lines[0]}{' [more with --debug]' if len(lines) > 1 else ''}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
  run()
