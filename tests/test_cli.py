"""The `pkdot` command line, as `python -m pkdot_jax.main`: help, one-line user errors, checks before the workdir is
touched.

No test trains: every command here stops at help, at a bad input, or at the checks that run before training. The
commands are forked from a process that imported the package once (`cli_runner`); the entry point's tests compare
that with a fresh interpreter.
"""

import glob
import json
import os
import re
import shlex
import subprocess

import pytest

import cli_runner  # tests/ is on sys.path (pytest rootdir-relative import mode)
from cli_runner import pkdot

ROOT = cli_runner.ROOT
COMMANDS = ("train", "demo", "sweep", "report", "data")


def assert_user_error(proc, *fragments):
  """Exit status 2 and exactly one stderr line, `pkdot: error: ...`, naming the fragments; no traceback."""
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, (proc.returncode, proc.stderr)
  assert len(lines) == 1 and lines[0].startswith("pkdot: error: "), proc.stderr
  assert "Traceback" not in proc.stderr
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])
  return lines[0]


# ------------------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"]])
def test_help_lists_the_commands(args):
  proc = pkdot(*args)
  assert proc.returncode == 0, proc.stderr
  for command in COMMANDS:
    assert f"  {command} " in proc.stdout
  assert "--logtostderr" not in proc.stdout  # not absl's dump of every module's flags
  assert proc.stderr == ""


OWN_FLAGS = {
    "train": ["--config=", "--workdir=", "--stages=", "--compilation_cache=", "--coordinator_address=",
              "--num_processes=", "--process_id=", "--[no]debug", "--config.FIELD=VALUE", "--verbosity=N"],
    "demo": ["--[no]quick", "--methods=", "--workdir=", "--compilation_cache=", "--num_processes="],
    "sweep": ["--sweep=", "--workdir=", "--shard=", "--compilation_cache=", "--process_id="],
    "report": ["--workdir=", "pkdot report WORKDIR", "--verbosity=N"],
    "data": ["--config=", "--config.FIELD=VALUE", "pkdot data check", "--[no]debug"],
}


NOT_THEIRS = {
    "train": ["--[no]quick", "--methods=", "--sweep=", "--shard="],
    "demo": ["--config=", "--stages=", "--sweep=", "--shard="],
    "sweep": ["--config=", "--stages=", "--[no]quick", "--methods="],
    "report": ["--config=", "--stages=", "--[no]quick", "--sweep=", "--compilation_cache=", "--num_processes="],
    "data": ["--workdir=", "--stages=", "--[no]quick", "--sweep=", "--compilation_cache="],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("form", ["flag", "help_command"])
def test_command_help_shows_only_its_flags(command, form):
  proc = pkdot(*([command, "--help"] if form == "flag" else ["help", command]))
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith(f"pkdot {command}: ")
  for flag in OWN_FLAGS[command]:
    assert flag in proc.stdout, flag
  for flag in NOT_THEIRS[command]:
    assert flag not in proc.stdout, flag


@pytest.mark.parametrize("args", [
    ["train", "--config=synthetic:smoke", "--help"],
    ["train", "--config", "synthetic:smoke", "--help"],
    ["--config=synthetic:smoke", "train", "-h"],
    ["--help", "train"],
    ["train", "--config=no_such_config", "--workdir=x", "--help"],
    ["train", "--config.model.dtype=float16", "--help"],
])
def test_help_combinations_show_train_help(args):
  proc = pkdot(*args)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.startswith("pkdot train: ")


# ------------------------------------------------------------------------------------------- the entry point
@pytest.mark.parametrize("args,code,status", [
    (["--help"], None, 0),
    (["nosuch"], None, 2),
    (["x"], "import sys\nfrom pkdot_jax import main\nprint(sys.argv, sys.path[:2], __name__)\n"
            "main.run(['pkdot', 'report', '--workdir=w', '--bogus'])", 2),
    ([], "BUG_BEFORE_RUNNING", 1),
])
def test_a_fresh_interpreter_gives_what_the_forked_command_gives(args, code, status, tmp_path):
  """`python -m pkdot_jax.main` (and `python -c`) in a new interpreter: the status, output and traceback of the
  runner's."""
  code = BUG_BEFORE_RUNNING.format(error="KeyError") if code == "BUG_BEFORE_RUNNING" else code
  code = code and code.replace("=w", f"={tmp_path / 'w'}")
  real = cli_runner.run_real(args, env=cli_runner.base_env(), code=code)
  forked = pkdot(*args, code=code)
  assert real.returncode == status, real.stderr
  assert (real.returncode, real.stdout, real.stderr) == (forked.returncode, forked.stdout, forked.stderr)
  expected = {0: ("stdout", "usage: pkdot "), 1: ("stderr", "Traceback (most recent call last):\n"),
              2: ("stderr", "pkdot: error: ")}[status]
  assert getattr(real, expected[0]).startswith(expected[1])
  assert not (tmp_path / "w").exists()


STATE = """
import os, sys
from absl import flags
from jax._src import xla_bridge
from pkdot_jax import console
print(flags.FLAGS.is_parsed(), xla_bridge.backends_are_initialized(), console.verbosity(), os.getcwd(),
      os.environ.get("PKDOT_DEBUG"), os.environ.get("LEFT_BEHIND"), sys.argv, sys.path[:2], __name__)
flags.FLAGS.mark_as_parsed()
console.set_verbosity(-1)
import jax; jax.devices()
os.environ["LEFT_BEHIND"] = "1"
"""


def test_each_forked_command_starts_from_the_imported_state():
  """Flags unparsed, no JAX backend, default verbosity, its own environment and argv: nothing left by the last."""
  from pkdot_jax import console
  expected = f"False False {console.DEFAULT} {ROOT} {{}} None ['-c', {{}}] ['', {ROOT!r}] __main__\n"
  assert pkdot("a", code=STATE, env={"PKDOT_DEBUG": "1"}).stdout == expected.format("1", "'a'")
  assert pkdot("b", code=STATE).stdout == expected.format("None", "'b'")


def test_the_runner_forks_only_where_the_environment_at_import_is_the_same():
  runner = cli_runner.shared(cli_runner.base_env())
  assert runner.forks(cli_runner.base_env(PKDOT_DEBUG="1", XLA_FLAGS="--xla_force_host_platform_device_count=2"))
  assert not runner.forks(cli_runner.base_env(PKDOT_COMPILATION_CACHE=ROOT))
  parent = "import os\nprint(os.getppid() == {})".format(os.getpid())
  assert pkdot(code=parent).stdout == "False\n"  # a child of the zygote
  assert pkdot(code=parent, env={"JAX_ENABLE_X64": "1"}).stdout == "True\n"  # read by JAX at import: a real one


def test_a_command_past_its_timeout_is_killed():
  with pytest.raises(subprocess.TimeoutExpired) as raised:
    pkdot(code="import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(300)", timeout=3)
  with pytest.raises(ProcessLookupError):
    os.kill(int(raised.value.output), 0)  # killed and reaped
  assert pkdot("--help").returncode == 0  # the runner serves the next command


# ----------------------------------------------------------------------------------------------- user errors
@pytest.mark.parametrize("args,fragments", [
    (["nosuch"], ["unknown command 'nosuch'"]),
    (["help", "nosuch"], ["unknown command 'nosuch'"]),
    (["train", "--bogus"], ["bogus"]),
    (["train", "--num_processes=x"], ["--num_processes"]),
    (["train"], ["--config", "--workdir"]),
    (["train", "--config=synthetic"], ["--workdir"]),
    (["train", "--config=no_such_name", "--workdir=w"], ["no_such_name", "built-in"]),
    (["train", "--config", "no_such_name", "--workdir=w"], ["no_such_name"]),
    (["train", "--config=missing/exp.py:x", "--workdir=w"], ["missing/exp.py"]),
    (["train", "--config=synthetic:no_such_variant", "--workdir=w"], ["--config=synthetic:no_such_variant",
                                                                       "no_such_variant"]),
    (["train", "--config=synthetic:smoke", "--workdir=w", "--config.model.no_such_field=1"],
     ["config.model.no_such_field", "dtype"]),
    (["train", "--config=synthetic:smoke", "--workdir=w", "--config.batch_size=abc"], ["batch_size", "abc"]),
    (["train", "--workdir=w", "--config.batch_size=4"], ["--config"]),
    (["demo", "--config=synthetic"], ["--config", "train"]),
    (["demo", "--stages=teacher"], ["--stages"]),
    (["report", "--quick", "w"], ["--quick", "`pkdot demo`"]),
    (["report", "w", "--compilation_cache=c"], ["--compilation_cache", "`pkdot train`", "`pkdot sweep`"]),
    (["train", "--config=synthetic", "--workdir=w", "--shard=0/2"], ["--shard", "`pkdot sweep`"]),
    (["demo", "--config.seeds=0"], ["--config.seeds", "`pkdot train`"]),
    (["report"], ["workdir"]),
    (["sweep", "--workdir=w"], ["--sweep"]),
    (["sweep", "--sweep=no/such/sweep.py", "--workdir=w"], ["no/such/sweep.py"]),
    (["train", "extra_arg", "--config=synthetic", "--workdir=w"], ["extra_arg"]),
    (["data", "--config=biovid_binary"], ["`pkdot data` needs the subcommand check"]),
    (["data", "check"], ["data check needs --config"]),
    (["data", "check", "--config=synthetic:smoke"], ["generated, not downloaded"]),
    (["data", "check", "--config=biovid_binary"], ["--config.data.manual_dir"]),
    (["data", "check", "--stages=teacher", "--config=biovid_binary"], ["--stages"]),
])
def test_user_errors_are_one_line(args, fragments, tmp_path):
  proc = pkdot(*[a.replace("=w", f"={tmp_path / 'w'}") for a in args])
  assert_user_error(proc, *fragments)
  assert not (tmp_path / "w").exists()


def test_report_of_a_missing_directory_is_a_user_error(tmp_path):
  assert_user_error(pkdot("report", tmp_path / "none"), "no finished runs")


@pytest.mark.parametrize("args,fragment", [
    (["--config=synthetic:smoke", "--config.model.dtype=float16"], "dtype"),
    (["--config", "synthetic:smoke", "--config.model.dtype", "float16"], "dtype"),
    (["--config=synthetic:smoke", "--stages=teacher,nosuch"], "unknown stage 'nosuch'"),
    (["--config=synthetic:smoke", "--config.distill.method=typo"], "typo"),
])
def test_bad_config_writes_nothing(args, fragment, tmp_path):
  workdir = tmp_path / "run"
  assert_user_error(pkdot("train", *args, f"--workdir={workdir}"), fragment)
  assert not workdir.exists()  # no config.json: the corrected command is not refused as "another config"


@pytest.mark.parametrize("override,fragments", [
    ("optimizer.learning_rate=-0.001", ["config.optimizer.learning_rate=-0.001", "> 0"]),
    ("optimizer.grad_clip=-1", ["config.optimizer.grad_clip=-1", ">= 0"]),
    ("stages.teacher.num_epochs=0", ["config.stages.teacher.num_epochs=0", ">= 1"]),
    ("distill.weight=-1", ["config.distill.weight=-1", ">= 0"]),
    ("distill.weight=nan", ["config.distill.weight=nan", "finite"]),
    ("checkpoint.max_to_keep=0", ["config.checkpoint.max_to_keep=0", ">= 1"]),
    ("distill.method_kwargs.pkdot.k=100", ["config.distill.method_kwargs.pkdot.k=100", "batch size", "16"]),
    ("distill.method_kwargs.pkdot.epsilon=0", ["config.distill.method_kwargs.pkdot.epsilon=0", "> 0"]),
    ("distill.kwargs.k=100", ["config.distill.kwargs.k", "method_kwargs"]),
    ("data.val_fraction=1.5", ["config.data.val_fraction=1.5", "< 1"]),
    ("batch_size=1000", ["config.batch_size=1000", "training split"]),
    ("distill.method=none", None),  # passes the schema; then: a workdir with no teacher
])
def test_bad_values_fail_in_one_line_before_anything_is_written(override, fragments, tmp_path):
  """Each value trained wrong or failed after training; now one line naming the field, nothing written."""
  workdir = tmp_path / "run"
  proc = pkdot("train", "--config=synthetic:smoke", f"--workdir={workdir}", f"--config.{override}",
               f"--config.data.data_dir={tmp_path / 'tfds'}", *(["--stages=student"] if fragments is None else []))
  assert_user_error(proc, *(fragments or ["teacher", "--stages"]))
  assert not workdir.exists()


CHECKS = """
import sys
from pkdot_jax import configs, errors
from pkdot_jax.train import loop

def fails(fragment, **fields):
  config = configs.load("synthetic:smoke")
  with config.unlocked():
    for path, value in fields.items():
      *parents, last = path.split("__")
      node = config
      for p in parents:
        node = node[p]
      node[last] = value
  try:
    loop.check_run(config, sys.argv[1], tuple(config.pipeline))
  except Exception as e:
    assert isinstance(e, errors.UserError), repr(e)
    assert fragment in str(e), (fragment, str(e))
  else:
    raise AssertionError(f"no error for {fields}")

fails("fusion.kind", model__fusion__kind="nosuch")
fails("num_tokens", model__fusion__num_tokens=7)
fails("student.mode", model__student__mode="nosuch")
fails("optimizer.name", optimizer__name="lbfgs")
fails("objective", tnet__objective="l1")
fails("protocol", data__protocol="nosuch")
fails("data.fold", data__fold=99)
fails("config.data.name", data__name="nosuch")
fails("batch_size", batch_size=0)
fails("loss 'pkt' takes no argument 'k'; its arguments: reduction", distill__method="pkt", distill__kwargs={"k": 4})
fails("config.distill.method_kwargs.rkd.angle_weight", distill__method_kwargs={"rkd": {"angle_weight": -1.0}})
fails("config.distill.extra[0].kwargs.temprature",
      distill__extra=({"method": "hinton_kd", "kwargs": {"temprature": 2.0}},))
fails("config.data.no_such_field", data__no_such_field=1)
fails("config.stages.student.optimizer", stages__student__optimizer={"learning_rte": 1e-4})
fails("not divisible by the 2 devices", batch_size=5)
fails("devices", num_devices=5)
print("all refused")
"""


def test_config_checks_before_training(tmp_path):
  proc = pkdot(tmp_path / "run", code=CHECKS, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
  assert proc.returncode == 0, proc.stderr
  assert "all refused" in proc.stdout
  assert not (tmp_path / "run").exists()


CHECK_ONLY = """
import sys
from pkdot_jax import commands, main
from pkdot_jax.train import loop
_, flags, _ = commands.parse(main.COMMANDS, sys.argv)
stages = tuple(flags.stages or flags.config.pipeline)
loop.check_run(flags.config, flags.workdir, stages)
print("checked", ",".join(stages))
"""


def test_corrected_command_passes_the_checks_after_a_bad_one(tmp_path):
  workdir = tmp_path / "run"
  bad = pkdot("train", "--config=synthetic:smoke", f"--workdir={workdir}", "--config.model.dtype=float16")
  assert_user_error(bad, "dtype")
  good = pkdot("train", "--config=synthetic:smoke", f"--workdir={workdir}", "--config.model.dtype=bfloat16",
               f"--config.data.data_dir={tmp_path / 'tfds'}", code=CHECK_ONLY)
  assert good.returncode == 0, good.stderr
  assert "checked teacher,tnet,student" in good.stdout
  assert not workdir.exists()


def test_missing_teacher_stage_is_reported_before_anything_is_written(tmp_path):
  workdir = tmp_path / "run"
  proc = pkdot("train", "--config=synthetic:smoke", f"--workdir={workdir}", "--stages=student")
  assert_user_error(proc, "teacher", "--stages")
  assert not workdir.exists()


def test_a_manual_download_dataset_needs_manual_dir(tmp_path):
  workdir = tmp_path / "run"
  proc = pkdot("train", "--config=biovid_binary:smoke", f"--workdir={workdir}")
  assert_user_error(proc, "manual_dir")
  assert not workdir.exists()


def test_workdir_of_another_config_is_refused_without_writing(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps({"seeds": [9]}))
  proc = pkdot("train", "--config=synthetic:smoke", f"--workdir={workdir}")
  assert_user_error(proc, "another config")
  assert sorted(os.listdir(workdir)) == ["config.json"]  # no run_info.json either


@pytest.mark.parametrize("raised,user_error", [("errors.ConfigError('variant x: no such variant')", True),
                                               ("TypeError('a bug in get_config')", False)])
def test_a_config_file_error_is_a_user_error_only_when_it_says_so(raised, user_error, tmp_path):
  """A config file's get_config() that refuses its variant is one line; one that fails otherwise is a bug."""
  path = tmp_path / "exp.py"
  path.write_text(f"from pkdot_jax import errors\n\ndef get_config(arg=''):\n  raise {raised}\n")
  proc = pkdot("train", f"--config={path}:x", f"--workdir={tmp_path / 'w'}")
  if user_error:
    assert_user_error(proc, f"--config={path}:x: variant x: no such variant")
  else:
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "a bug in get_config" in proc.stderr, proc.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how, tmp_path):
  args = ["train", "--config=synthetic:no_such_variant", f"--workdir={tmp_path / 'run'}"]
  proc = pkdot(*args, *(["--debug"] if how == "flag" else []), env={"PKDOT_DEBUG": "1"} if how == "env" else None)
  assert proc.returncode == 2
  assert "Traceback" in proc.stderr and "synthetic.py" in proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith("pkdot: error: ")


BUG_BEFORE_RUNNING = """
from pkdot_jax import commands, main
def broken(commands, name, values):
  raise {error}("a bug")
commands.check_required = broken
main.run(["pkdot", "report", "somewhere"])
"""

BUG_WHILE_RUNNING = """
from pkdot_jax import main
from pkdot_jax.study import report
def broken(workdir):
  raise {error}("a bug")
report.main = broken
main.run(["pkdot", "report", "somewhere"])
"""


@pytest.mark.parametrize("code", [BUG_BEFORE_RUNNING, BUG_WHILE_RUNNING])
@pytest.mark.parametrize("error", ["RuntimeError", "KeyError", "ValueError", "TypeError", "AttributeError",
                                   "FileNotFoundError"])
def test_a_bug_keeps_its_traceback(code, error):
  """Only the user-error types are one line: the built-in ones, raised by a bug, keep their traceback."""
  proc = pkdot(code=code.format(error=error))
  assert proc.returncode == 1, proc.stderr
  assert "Traceback" in proc.stderr and "a bug" in proc.stderr and error in proc.stderr
  assert "pkdot: error" not in proc.stderr


def test_user_error_types():
  """The library's user errors are `errors.UserError`s and stay what their callers catch."""
  from pkdot_jax import errors
  from pkdot_jax.data import io
  from pkdot_jax.train import locks, records, schema

  for kind, builtin in [(schema.ConfigError, ValueError), (errors.ConfigError, ValueError),
                        (errors.MissingError, FileNotFoundError), (records.RecordError, ValueError),
                        (io.BadInputError, ValueError), (io.StaleDatasetError, ValueError),
                        (locks.InUse, RuntimeError)]:
    assert issubclass(kind, errors.UserError) and issubclass(kind, builtin), kind
  assert str(errors.MissingError("no file x")) == "no file x"
  for builtin in (ValueError, FileNotFoundError, KeyError, TypeError, AttributeError, RuntimeError):
    assert not issubclass(builtin, errors.UserError)


# ---------------------------------------------------------------------------------------------- the run record
JOURNAL_DAMAGED_INSIDE = '{"stage": "teacher", "epoch": 1}\n{"stage": "tea\n{"stage": "teacher", "epoch": 2}\n'


@pytest.mark.parametrize("record,content,fragment", [
    ("config.json", '{"seeds": [0', "not a valid JSON record"),
    ("config.json", "", "empty file"),
    ("run_info.json", "not json at all", "not a valid JSON record"),
    ("teacher/result.json", "\x00" * 8, "not a valid JSON record"),
    ("metrics.jsonl", JOURNAL_DAMAGED_INSIDE, "line 2"),
])
def test_unreadable_records_are_named_before_anything_is_written(record, content, fragment, tmp_path):
  workdir = tmp_path / "run"
  (workdir / record).parent.mkdir(parents=True)
  (workdir / record).write_text(content)
  proc = pkdot("train", "--config=synthetic:smoke", f"--workdir={workdir}")
  line = assert_user_error(proc, fragment)
  assert line.startswith(f"pkdot: error: {workdir / record}: ")
  assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.is_file()) == [record]
  assert (workdir / record).read_text() == content


def test_report_names_an_unreadable_result(tmp_path):
  run = tmp_path / "runs" / "method=pkdot__data.fold=0"
  (run / "student").mkdir(parents=True)
  (run / "config.json").write_text(json.dumps({"data": {"fold": 0}, "model": {"task": "classification"}}))
  (run / "student" / "result.json").write_text('{"members": [')
  assert_user_error(pkdot("report", tmp_path), f"{run / 'student' / 'result.json'}: ")


# ---------------------------------------------------------------------------------- commands in the documentation
def doc_commands():
  """(file, command line) for every `pkdot ...` of README.md and docs/*.md: shell lines of fenced blocks (not
  python ones; their code spans where they have some) and inline code spans; `[a | b]` is taken as `a`, `x|y`
  in the command's place as each of them."""
  found = []
  for path in [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
    text = open(path).read()
    blocks = re.findall(r"^\s*```(\w*)\n(.*?)^\s*```", text, re.S | re.M)
    lines = [piece for lang, body in blocks if lang != "python" for line in body.replace("\\\n", " ").splitlines()
             for piece in (re.findall(r"`([^`]+)`", line) if "`" in line else [line])]
    prose = re.sub(r"^\s*```.*?^\s*```", "", text, flags=re.S | re.M)
    lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    for line in lines:
      for part in re.split(r"&&|;|\s&\s|\s&$|#", line):
        match = re.search(r"(?:^|\s)(pkdot(?:\s.*)?)$", part.strip())
        if match and not re.match(r"pkdot\s*[=(.]", match.group(1)):
          command = re.sub(r"\[([^\[\]]*)\]", lambda m: m.group(1).split("|")[0], match.group(1))
          words = command[:-1].split() if command.count(")") > command.count("(") else command.split()
          if len(words) > 1 and not re.fullmatch(r"[-\w|.=/]+", words[1]):  # prose: "the pkdot command), ..."
            continue
          for name in words[1].split("|") if len(words) > 1 else [""]:
            found.append((os.path.relpath(path, ROOT), " ".join(words[:1] + [name] + words[2:]).strip()))
  return found


def parse_command(line):
  """Parses (or, for help, resolves) a documented command without running it; `...` and `--config.FIELD=VALUE`
  placeholders are left out; `--config=...` stands for the synthetic config, COMMAND for train, a shell variable
  for 0."""
  from pkdot_jax import commands, main
  placeholders = {"--config=...": "--config=synthetic", "COMMAND": "train"}
  argv = [placeholders.get(w, re.sub(r"\$\w+", "0", w)) for w in shlex.split(line)
          if w != "..." and not w.startswith("--config.FIELD")]
  if commands.help_topic(main.COMMANDS, argv) is None:
    commands.parse(main.COMMANDS, argv)


def test_documented_commands_parse():
  from pkdot_jax import errors, main

  found = doc_commands()
  assert {line.split()[1] for _, line in found if len(line.split()) > 1} >= set(COMMANDS)
  assert len(found) >= 30, found
  examples = [("help", e) for c in main.COMMANDS.values() for e in c.examples]
  failures = []
  for where, line in found + examples:
    try:
      parse_command(line)
    except errors.UserError as e:
      failures.append(f"{where}: {line}: {e}")
  assert not failures, "\n".join(failures)
  for wrong in ("pkdot report --quick runs/x", "pkdot demo --stages=teacher", "pkdot train --config=synthetic "
                "--config.distill.methd=pkt", "pkdot sweep --shard"):
    with pytest.raises(errors.UsageError):
      parse_command(wrong)
