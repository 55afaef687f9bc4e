"""Command line: `pkdot COMMAND [flags]` (also `python -m pkdot_jax.main`).

Commands (`pkdot --help` lists them, `pkdot COMMAND --help` or `pkdot help COMMAND` shows one command's flags):
  train    run pipeline stages of one experiment config in a workdir (the default command)
  demo     the main job on the embedded synthetic dataset: teacher, T-Net and every distillation method
  sweep    an ablation grid, one workdir per run, resumable and shardable
  report   rebuild tables and plots from a sweep or demo workdir
  data     `pkdot data check`: what the builder will find in a manual download, before preparing it

Errors. A *user error* prints one line, `pkdot: error: ...`, to stderr and exits with status 2; `--debug` (or the
environment variable PKDOT_DEBUG=1) prints the full traceback instead. User errors are:
  - while reading the command line and the config (before any command starts its work): every error of the
    flag parser (absl `flags.Error`: unknown flag, bad flag value, a config file that fails to load), an unknown
    `--config.FIELD` override (AttributeError / KeyError from the config), an unknown command, a missing
    required flag (`UserError`, `app.UsageError`), a missing config file or unknown config name
    (FileNotFoundError), and any ValueError / KeyError / AttributeError / TypeError raised by the checks that
    run before training (`loop.validate_config`: the schema's `ConfigError` naming a field, the model builders'
    config checks, the optimizer settings);
  - while a command runs: ValueError (config checks inside the trainer, e.g. a dataset that needs
    --config.data.manual_dir, a workdir that holds another config), FileNotFoundError, NotADirectoryError and
    PermissionError (missing data, a teacher stage that has not been trained, no finished runs to report), and
    a workdir in use by another live process (`locks.InUse`, naming its pid and host).
Any other exception is a bug (or an environment failure) and keeps its traceback (exit status 1). The `pkdot`
script enters through `cli.py`, which exits with status 2 and one line when the `train` extra is not installed.

Signals (`train/preemption.py`): SIGTERM (preemption, a SLURM time limit, scancel) or SIGINT (Ctrl-C) while a
stage trains finishes the step in progress, saves a checkpoint of it, waits for every pending write, prints
one line `pkdot: stopped by SIGTERM: ...` and exits with status 143 (SIGTERM) or 130 (SIGINT); re-running the
same command resumes. A second Ctrl-C aborts at once (status 130, no traceback).

Output: progress (stage and epoch lines, bars) on stderr as `--verbosity` says (console.py), results (tables,
report paths) on stdout.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import textwrap
import traceback

from absl import app, flags
from ml_collections import config_flags

from pkdot_jax.train import locks, preemption  # standard library and numpy only: the CLI starts fast

COMMANDS = ("train", "demo", "sweep", "report", "data")
HELP_FLAGS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--helpxml")
EXIT_USER_ERROR = 2

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config: a built-in config name (synthetic, "
                                "biovid_binary, biovid_5class, affwild2_va) or a file with get_config(), "
                                "optionally followed by :variant (e.g. synthetic:smoke). Fields are overridden "
                                "with --config.FIELD=VALUE (e.g. --config.distill.method=pkt).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics.jsonl, reports).")
flags.DEFINE_list("stages", None, "Stages to run, comma-separated (default: config.pipeline). Of: pretrain_video, "
                  "pretrain_privileged, teacher, tnet, student.")
flags.DEFINE_string("sweep", None, "Sweep file (a get_sweep() module).")
flags.DEFINE_string("shard", "0/1", "This process's share of the sweep grid, i/n.")
flags.DEFINE_bool("quick", False, "The small smoke version (fewer subjects, epochs, folds, seeds).")
flags.DEFINE_bool("all", False, "The full comparison (every applicable registry loss, each with its "
                  "distillation weight chosen on validation subjects among three values).")
flags.DEFINE_bool("protocols", False, "The protocol study: the demo's rows under subject-disjoint folds, the "
                  "authors' clip-level folds with test-fold selection, and those with the authors' frozen student "
                  "backbone (default workdir runs/protocols).")
flags.DEFINE_list("methods", None, "A subset of the distillation methods, comma-separated (video_only is always "
                  "needed).")
flags.DEFINE_string("compilation_cache", os.environ.get("PKDOT_COMPILATION_CACHE",
                                                         os.path.join("~", ".cache", "pkdot-jax", "xla")),
                    "Persistent XLA compilation cache (shared by every run on this machine; '' turns it off; "
                    "env PKDOT_COMPILATION_CACHE). A second run of the same programs loads them instead of "
                    "compiling (tens of seconds on a small CPU).")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0 (env PKDOT_COORDINATOR; "
                    "detected under SLURM / Open MPI).")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes (env PKDOT_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's id (env PKDOT_PROCESS_ID).")
flags.DEFINE_bool("debug", False, "Show the full traceback of an error (also env PKDOT_DEBUG=1).")


class UserError(Exception):
  """A mistake on the command line or in the config: reported in one line, exit status 2."""


# ----------------------------------------------------------------------------------------------------- help
_MULTI_HOST = ("coordinator_address", "num_processes", "process_id")
_VERBOSITY = ("verbosity", "What is printed (progress on stderr, results on stdout): -1 errors and results only; "
              "0 + a line per stage (trained / skipped as done / resuming at step N of M) and per epoch; 1 + "
              "progress bars (default); 2 + the libraries' INFO logs.")
_COMMON = ("compilation_cache",) + _MULTI_HOST + ("debug", _VERBOSITY)

# Per command: one-line summary, usage lines, description, its flags (name or (name, help override)).
_COMMAND_HELP = {
    "train": (
        "run pipeline stages of one experiment config in a workdir (the default command)",
        ["pkdot train --config=NAME[:variant] --workdir=DIR [--stages=teacher,tnet] [--config.FIELD=VALUE ...]",
         "pkdot train --config=synthetic --workdir=runs/syn --config.distill.method=pkt --config.seeds=0,1"],
        "Stages: pretrain_video, pretrain_privileged, teacher, tnet, student (default: config.pipeline). "
        "Re-running the same command resumes; a finished stage is skipped. The config is checked before "
        "anything is written to the workdir; a workdir that holds a run of another config is refused.",
        ("config", ("workdir", "Run directory (config.json, checkpoints, metrics.jsonl, <stage>/result.json). "
                               "Required."), "stages") + _COMMON),
    "demo": (
        "the main job on the embedded synthetic dataset: teacher, T-Net and every distillation method",
        ["pkdot demo [--quick | --all] [--methods=video_only,pkdot,...] [--workdir=runs/demo]",
         "pkdot demo --protocols [--quick] [--workdir=runs/protocols]"],
        "Trains over subject-disjoint folds and seeds, prints the comparison table and writes a report folder "
        "under the workdir. Resumable: re-running the same command skips the finished runs.",
        ("quick", "all", "protocols", "methods",
         ("workdir", "Root of the demo's runs and report (default: runs/demo).")) + _COMMON),
    "sweep": (
        "an ablation grid, one workdir per run, resumable and shardable",
        ["pkdot sweep --sweep=experiments/sweeps/NAME.py --workdir=runs/NAME [--shard=i/n]"],
        "Every process (or machine) given another --shard runs its share of the grid; run `pkdot report` once "
        "every shard is done (a single shard reports by itself).",
        ("sweep", ("workdir", "Root of the sweep's runs (one sub-directory per run). Required."), "shard")
        + _COMMON),
    "report": (
        "rebuild tables and plots from a sweep or demo workdir",
        ["pkdot report WORKDIR"],
        "Reads the finished runs' files under WORKDIR and writes summary.md, summary.csv and plots there.",
        (("workdir", "The sweep or demo root (same as the positional WORKDIR)."), "debug", _VERBOSITY)),
    "data": (
        "`pkdot data check`: what the builder will find in a manual download, before preparing it",
        ["pkdot data check --config=NAME[:variant] --config.data.manual_dir=DIR [--config.FIELD=VALUE ...]"],
        "Reads the download the way the builder will and prints the subjects, samples per class and per split of "
        "the configured folds, every file that would be skipped or refused with the reason, and the size the "
        "prepared set will take. Writes nothing. Exit status 0 only when the set can be built as configured.",
        ("config", "debug")),
}
# Flags that belong to one command only: passing them to another is an error, not silently ignored.
_COMMAND_ONLY = {"config": "train", "stages": "train", "quick": "demo", "all": "demo", "methods": "demo",
                 "protocols": "demo",
                 "sweep": "sweep", "shard": "sweep"}
_CONFIG_COMMANDS = ("train", "data")  # the commands that take --config and its --config.FIELD overrides


def _flag_names(command: str) -> list[str]:
  return [f if isinstance(f, str) else f[0] for f in _COMMAND_HELP[command][3]]


def _wrap(text: str, indent: int, width: int = 100) -> str:
  return textwrap.fill(text, width=width, initial_indent=" " * indent, subsequent_indent=" " * indent,
                       break_on_hyphens=False, break_long_words=False)


_METAVARS = {"config": "NAME[:variant]", "workdir": "DIR", "stages": "a,b", "methods": "a,b", "shard": "i/n",
             "sweep": "FILE.py", "compilation_cache": "DIR", "coordinator_address": "HOST:PORT",
             "num_processes": "N", "process_id": "I", "verbosity": "N"}


def _render_flag(entry) -> str:
  name, text = (entry, None) if isinstance(entry, str) else entry
  flag = FLAGS[name]
  text = text or flag.help
  default = flag.default
  if isinstance(default, list):
    default = ",".join(str(d) for d in default)
  value = "" if flag.boolean else "=" + _METAVARS.get(name, "VALUE")
  if default not in (None, False, "") and name not in ("workdir", "verbosity"):
    text += f" (default: {default})"
  head = f"  --{'[no]' if flag.boolean else ''}{name}{value}"
  return head + "\n" + _wrap(text, 6)


def command_help(command: str) -> str:
  summary, usages, description, entries = _COMMAND_HELP[command]
  lines = [f"pkdot {command}: {summary}", "", "usage:"] + [f"  {u}" for u in usages]
  lines += ["", _wrap(description, 0), "", "flags:"] + [_render_flag(e) for e in entries]
  if command in _CONFIG_COMMANDS:
    lines += ["  --config.FIELD=VALUE", _wrap("Override one field of the config (after --config), e.g. "
                                              "--config.model.dtype=bfloat16 --config.batch_size=32; a loss's "
                                              "argument: --config.distill.method_kwargs.pkdot.k=8.", 6)]
  return "\n".join(lines) + "\n"


def general_help() -> str:
  lines = ["usage: pkdot COMMAND [flags]      (also: python -m pkdot_jax.main COMMAND [flags])", "", "commands:"]
  lines += [f"  {c:<8} {_COMMAND_HELP[c][0]}" for c in COMMANDS]
  lines += ["", "examples:"] + [f"  {_COMMAND_HELP[c][1][0]}" for c in COMMANDS]
  lines += ["", "`pkdot COMMAND --help` (or `pkdot help COMMAND`) shows a command's flags.", "",
            _wrap("Multi-host: pass --coordinator_address/--num_processes/--process_id (or run under SLURM / "
                  "Open MPI, or set PKDOT_COORDINATOR, PKDOT_NUM_PROCESSES, PKDOT_PROCESS_ID); every process "
                  "runs the same command.", 0),
            _wrap("Errors in the command line or the config print one line and exit with status 2; --debug (or "
                  "PKDOT_DEBUG=1) shows the traceback.", 0)]
  return "\n".join(lines) + "\n"


def _help_request(argv: list[str]) -> tuple[bool, str | None]:
  """(help asked for, the command it is about or None). `pkdot help [COMMAND]`, `pkdot [COMMAND] --help`."""
  args = argv[1:]
  asked = any(a in HELP_FLAGS or a.split("=")[0] in HELP_FLAGS for a in args)
  positional = [a for a in args if not a.startswith("-")]
  if positional[:1] == ["help"]:
    asked = True
    args = args[args.index("help") + 1:]
  if not asked:
    return False, None
  names = [a for a in args if not a.startswith("-")]
  for name in names:
    if name in COMMANDS:
      return True, name
  if positional[:1] == ["help"] and names:
    raise UserError(f"unknown command {names[0]!r}; commands are {', '.join(COMMANDS)}")
  return True, None


# -------------------------------------------------------------------------------------------------- parsing
@dataclasses.dataclass
class _Invocation:
  """One `pkdot` command line: the --config value as resolved and as given, and whether the command's own work
  has started (an error after that point is reported as a runtime error; see the module docstring)."""
  config: tuple[str, str] | None = None
  running: bool = False


def _resolve_config_names(argv: list[str], invocation: _Invocation) -> list[str]:
  """`--config=synthetic:demo` / `--config synthetic:demo` (a built-in config's name, or a file) -> the file's
  absolute path, which the flag parser loads. A missing file or unknown name raises FileNotFoundError."""
  from pkdot_jax import configs

  out = list(argv)
  for i, arg in enumerate(out):
    if arg == "--":
      break
    if arg.startswith("--config="):
      spec = arg[len("--config="):]
      out[i] = "--config=" + configs.resolve(spec)
      invocation.config = (out[i][len("--config="):], spec)
    elif arg == "--config":
      if i + 1 >= len(out) or out[i + 1].startswith("-"):
        raise UserError("--config needs a value: a built-in config name or a config file")
      spec = out[i + 1]
      out[i + 1] = configs.resolve(spec)
      invocation.config = (out[i + 1], spec)
  return out


def _unknown_override(argv: list[str], invocation: _Invocation) -> str | None:
  """The first `--config.FIELD` of argv that the config does not have, as a message (None if all exist)."""
  if invocation.config is None:
    return None
  from pkdot_jax import configs
  try:
    config = configs.load(invocation.config[0])  # the resolved file of --config
  except Exception:  # pylint: disable=broad-except
    return None
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    path = arg[len("--config."):].split("=")[0]
    node, done = config, []
    for part in path.split("."):
      if not hasattr(node, "keys") or part not in node.keys():
        known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none (not a group of fields)"
        where = "config." + ".".join(done) if done else "the config"
        hint = f" (a loss's argument: --config.distill.method_kwargs.METHOD.{part})" if done == ["distill", "kwargs"] \
            else ""
        return f"--config.{path}: unknown config field {part!r}; fields of {where}: {known or 'none'}{hint}"
      node, done = node[part], done + [part]
  return None


def _parse_flags(argv: list[str], invocation: _Invocation) -> list[str]:
  """absl flag parsing with errors turned into one-line UserErrors."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    text = str(e)
    if "Error whilst parsing config file" in text:  # a config module's get_config() failed: keep its last line
      head = text.split(": Error whilst parsing config file")[0]
      if invocation.config is not None:  # name the config as it was given, not by its resolved path
        head = head.replace(*invocation.config)
      last = [line for line in text.splitlines() if line.strip()][-1].strip()
      raise UserError(f"{head}: {last}") from e
    if isinstance(e, flags.UnrecognizedFlagError) and e.flagname.startswith("config."):
      if invocation.config is None:
        raise UserError(f"--{e.flagname}: a config override needs --config first") from e
    line = text.splitlines()[0]
    if isinstance(e, flags.UnrecognizedFlagError):
      line += " (see pkdot --help, pkdot COMMAND --help)"
    raise UserError(line) from e
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # from ConfigDict: an unknown override field
    message = _unknown_override(argv, invocation)
    raise UserError(message or f"bad config override: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------------------- checks
def _check_flags(command: str) -> None:
  for name, owner in _COMMAND_ONLY.items():
    if owner != command and FLAGS[name].present and not (name == "config" and command in _CONFIG_COMMANDS):
      raise UserError(f"--{name} is a flag of `pkdot {owner}`, not of `pkdot {command}` (see pkdot {command} --help)")
  if command not in _CONFIG_COMMANDS:
    overrides = [n for n in FLAGS if n.startswith("config.") and FLAGS[n].present]
    if overrides:
      raise UserError(f"--{overrides[0]}: config overrides apply to `pkdot train` and `pkdot data check` only")


# ----------------------------------------------------------------------------------------------------- main
def main(argv: list[str], invocation: _Invocation | None = None) -> None:
  from absl import logging
  from pkdot_jax import console
  invocation = invocation or _Invocation()
  # absl's --verbosity (default -1) selects what pkdot prints (pkdot_jax/console.py); absl's own logs stay at
  # WARNING below level 2 (orbax logs every save and restore at INFO).
  console.set_verbosity(FLAGS.verbosity if FLAGS["verbosity"].present else console.DEFAULT)
  logging.set_verbosity(logging.INFO if console.verbosity() >= console.DEBUG else
                        logging.WARNING if console.verbosity() >= console.STAGES else logging.ERROR)
  positional = argv[1:]
  command = positional[0] if positional else "train"
  if command not in COMMANDS:
    raise UserError(f"unknown command {command!r}; commands are {', '.join(COMMANDS)} (see pkdot --help)")
  extra = positional[2:] if command in ("report", "data") else positional[1:]
  if extra:
    raise UserError(f"unexpected argument {extra[0]!r} for `pkdot {command}` (see pkdot {command} --help)")
  _check_flags(command)
  if command == "train" and (FLAGS.config is None or FLAGS.workdir is None):
    missing = " and ".join(f"--{n}" for n in ("config", "workdir") if FLAGS[n].value is None)
    raise UserError(f"train needs {missing} (see pkdot train --help)")
  if command == "sweep":
    if FLAGS.sweep is None or FLAGS.workdir is None:
      missing = " and ".join(f"--{n}" for n in ("sweep", "workdir") if FLAGS[n].value is None)
      raise UserError(f"sweep needs {missing} (see pkdot sweep --help)")
    if not os.path.isfile(FLAGS.sweep):
      raise UserError(f"--sweep={FLAGS.sweep}: no such file")
  if command == "report" and (positional[1] if len(positional) > 1 else FLAGS.workdir) is None:
    raise UserError("report needs a workdir: pkdot report WORKDIR")
  if command == "data":
    _data_command(positional[1:], invocation)
    return

  num_processes = FLAGS.num_processes or int(os.environ.get("PKDOT_NUM_PROCESSES", "1"))
  if FLAGS.compilation_cache and num_processes > 1:
    # A requeued two-process CPU job that loaded the first run's programs from the persistent cache stalled
    # after connecting in our tests (and ran normally without it); multi-process jobs compile afresh.
    print("pkdot: multi-process job: the persistent compilation cache is off", file=sys.stderr)
  elif FLAGS.compilation_cache:
    import jax
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(FLAGS.compilation_cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

  from pkdot_jax.train import parallel
  parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)

  if command == "train":
    from pkdot_jax.train import loop, programs
    invocation.running = True  # run_pipeline checks the config before it writes anything
    stages, context = tuple(FLAGS.stages) if FLAGS.stages else None, programs.Context()
    loop.check_run(FLAGS.config, FLAGS.workdir, stages or tuple(FLAGS.config.pipeline), context)  # errors first
    console.info(f"pkdot: to watch it: tensorboard --logdir {FLAGS.workdir}")
    if FLAGS.config.get("teacher_workdir") and FLAGS.config.teacher_workdir != FLAGS.workdir:
      console.info(f"pkdot: its teacher-side stages: tensorboard --logdir {FLAGS.config.teacher_workdir}")
    results = loop.run_pipeline(FLAGS.config, FLAGS.workdir, stages, context=context)
    from pkdot_jax.study import report
    print(report.stage_table(results))
  elif command == "demo":
    from pkdot_jax.study import demo
    kwargs = {"methods": tuple(FLAGS.methods)} if FLAGS.methods else {}
    invocation.running = True
    if FLAGS.protocols:
      if FLAGS.all:
        raise UserError("--protocols runs the demo's default rows: it takes --quick, not --all")
      from pkdot_jax.study import protocols
      protocols.main(workdir=FLAGS.workdir or "runs/protocols", quick=FLAGS.quick, **kwargs)
    else:
      demo.main(workdir=FLAGS.workdir or "runs/demo", quick=FLAGS.quick, full=FLAGS.all, **kwargs)
  elif command == "sweep":
    from pkdot_jax.study import sweep
    invocation.running = True
    if sweep.main(FLAGS.sweep, FLAGS.workdir, FLAGS.shard):  # the whole grid: its report now
      _report(FLAGS.workdir)
  elif command == "report":
    invocation.running = True
    _report(positional[1] if len(positional) > 1 else FLAGS.workdir)


def _report(workdir: str) -> None:
  """`pkdot report WORKDIR`: a protocol study's or a demo's workdir gets its own report, any other the sweep's."""
  from pkdot_jax.study import demo, protocols, report
  if protocols.is_protocols(workdir):
    protocols.show_report(workdir)
  elif demo.is_demo(workdir):
    demo.show_report(workdir)
  else:
    report.main(workdir)


def _data_command(args: list[str], invocation: _Invocation) -> None:
  """`pkdot data check`: the report on stdout; a set that cannot be built ends in one error line (exit 2)."""
  if args[:1] != ["check"]:
    got = f"got {args[0]!r}" if args else "none given"
    raise UserError(f"`pkdot data` needs the subcommand check ({got}; see pkdot data --help)")
  if FLAGS.config is None:
    raise UserError("data check needs --config (see pkdot data --help)")
  from pkdot_jax.data import check
  invocation.running = True
  check.run(FLAGS.config, progress=lambda text: print(f"pkdot data check: {text}", file=sys.stderr, flush=True))


# --------------------------------------------------------------------------------------------- error report
_SETUP_ERRORS = (UserError, app.UsageError, flags.Error, FileNotFoundError, ValueError, KeyError,
                 AttributeError, TypeError)
_RUN_ERRORS = (UserError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError, locks.InUse)


def is_user_error(error: BaseException, running: bool) -> bool:
  """Whether `error` is reported in one line (see the module docstring); `running`: the command's work began."""
  return isinstance(error, _RUN_ERRORS if running else _SETUP_ERRORS)


def _debug_requested(argv: list[str]) -> bool:
  if os.environ.get("PKDOT_DEBUG", "").strip().lower() in ("1", "true", "yes", "on"):
    return True
  value = False
  for arg in argv[1:]:
    if arg == "--":
      break
    if arg == "--debug":
      value = True
    elif arg == "--nodebug":
      value = False
    elif arg.startswith("--debug="):
      value = arg.split("=", 1)[1].strip().lower() in ("1", "true", "yes", "t", "y")
  return value


def _one_line(error: BaseException) -> str:
  if isinstance(error, KeyError) and len(error.args) == 1:
    text = f"no such key {error.args[0]!r}"
  else:
    text = str(error).strip() or type(error).__name__
  lines = [line for line in text.splitlines() if line.strip()]
  line = lines[0].strip() if lines else text
  if len(lines) > 1:
    line += " [more with --debug]"
  if not isinstance(error, (UserError, app.UsageError, flags.Error, ValueError, OSError, locks.InUse)):
    line = f"{type(error).__name__}: {line}"
  return line


def run(argv: list[str] | None = None) -> None:
  """Console-script entry point (`pkdot`)."""
  argv = list(sys.argv if argv is None else argv)
  debug = _debug_requested(argv)
  invocation = _Invocation()
  try:
    asked, command = _help_request(argv)
    if asked:
      if any(a.split("=")[0] == "--helpfull" for a in argv[1:]):
        print(FLAGS.get_help())  # every flag of every module, absl's own listing
      else:
        print(command_help(command) if command else general_help(), end="")
      sys.exit(0)
    argv = _resolve_config_names(argv, invocation)
    app.run(functools.partial(main, invocation=invocation), argv=argv,
            flags_parser=functools.partial(_parse_flags, invocation=invocation))
  except KeyboardInterrupt:
    if debug:
      raise
    print("pkdot: interrupted", file=sys.stderr)
    sys.exit(130)
  except preemption.Preempted as e:  # a signal stopped training after saving it
    print(f"pkdot: {e} (exit status {e.exit_status})", file=sys.stderr)
    sys.exit(e.exit_status)
  except Exception as e:  # pylint: disable=broad-except
    if not is_user_error(e, invocation.running):
      raise  # a bug: the traceback, exit status 1
    if debug:
      traceback.print_exc()
    print(f"pkdot: error: {_one_line(e)}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


if __name__ == "__main__":
  run()
