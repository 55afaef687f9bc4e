"""Runs `python -m pkdot_jax.main ARGS` (or `python -c CODE ARGS`) as a forked copy of a warm Python process.

A fresh interpreter spends seconds importing JAX, Flax, ott and TFDS before the command even parses its flags. The
runner starts one "zygote" process per test process (per pytest-xdist worker) that imports those packages once,
without initialising a JAX backend or parsing any absl flag, and serves each command by `os.fork()`: the child
takes the command's environment, working directory, argv and `sys.path[0]`, writes fds 1 and 2 to files, runs
`pkdot_jax.main` as `__main__` (a fresh copy of the module, so its flag defaults read the command's environment)
or the `-c` code, and exits as the interpreter would: `SystemExit`'s status (a message: printed, status 1), an
uncaught exception's traceback and status 1, atexit handlers run, output flushed. What the command imports,
configures or initialises (absl flags, console verbosity, the JAX backend) lives and dies in the child.

The environment a package reads at import time is the zygote's: a command whose environment differs from the
zygote's (as started, or as its imports left it) in any variable but those read when the command runs
(`CALL_TIME_ENV`) runs in a real subprocess instead, as does every command when forking is unavailable;
`run_real` always does. A command that outlives its timeout is killed and raises `subprocess.TimeoutExpired`, as
`subprocess.run` does. The zygote exits at the end of its input (its test process closed it or died) and is
closed by `close_shared()` at the end of the session.
"""

from __future__ import annotations

import atexit
import json
import locale
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = "pkdot_jax.main"
# Imported once by the zygote: what the commands import, short of pkdot_jax.main itself (run afresh each time).
WARM_MODULES = ("absl.flags", "absl.logging", "pkdot_jax.commands", "pkdot_jax.console", "pkdot_jax.configs",
                "pkdot_jax.train.loop", "pkdot_jax.train.programs", "pkdot_jax.train.input", "pkdot_jax.data.check",
                "pkdot_jax.study.report", "pkdot_jax.study.demo", "pkdot_jax.study.sweep",
                "pkdot_jax.study.protocols")
# Read when a command runs, never at import: a command may set them differently from the zygote. XLA reads
# XLA_FLAGS when the JAX backend starts, which never happens in the zygote; pytest sets PYTEST_CURRENT_TEST for
# each test.
CALL_TIME_ENV = frozenset({"PKDOT_DEBUG", "PKDOT_COORDINATOR", "PKDOT_NUM_PROCESSES", "PKDOT_PROCESS_ID",
                           "XLA_FLAGS", "PYTEST_CURRENT_TEST"})


def base_env(**changes: str) -> dict[str, str]:
  """The tests' environment for a command: this process's, PKDOT_DEBUG unset, the repository first on
  PYTHONPATH, JAX on the CPU, no persistent compilation cache of pkdot's own; then `changes`."""
  env = {k: v for k, v in os.environ.items() if k != "PKDOT_DEBUG"}
  env.update(PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu",
             PKDOT_COMPILATION_CACHE="")
  env.update(changes)
  return env


def pkdot(*args, env: dict[str, str] | None = None, code: str | None = None,
          timeout: float = 180) -> subprocess.CompletedProcess:
  """`python -m pkdot_jax.main ARGS` (or `python -c CODE ARGS`) from the repository root, in `base_env(**env)`,
  forked from this process's zygote where it can be."""
  full_env = base_env(**(env or {}))
  return shared(base_env()).run(args, env=full_env, code=code, timeout=timeout)


def command_line(args, code: str | None = None) -> list[str]:
  """The interpreter's command line for `python -m pkdot_jax.main ARGS` or `python -c CODE ARGS`."""
  return [sys.executable] + (["-c", code] if code is not None else ["-m", MODULE]) + [str(a) for a in args]


def run_real(args, *, env: dict[str, str], cwd: str = ROOT, code: str | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess:
  """The command in a new interpreter (`subprocess.run`, output captured as text)."""
  return subprocess.run(command_line(args, code), cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=timeout)


# --------------------------------------------------------------------------------------------- the test side
class Runner:
  """A zygote started with environment `env`; `run` serves a command from it (or from a real subprocess)."""

  def __init__(self, env: dict[str, str]):
    self._log = tempfile.NamedTemporaryFile(prefix="pkdot-zygote-", suffix=".log")
    self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], cwd=ROOT, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
    self._buffer = b""
    ready = self._receive(time.monotonic() + 600)
    if "ready" not in ready:
      self.close()
      raise RuntimeError(f"the zygote did not start: {ready}")
    # Its environment before and after its imports (TensorFlow sets variables of its own, as it would in any process)
    self.envs = {_import_time(env), _import_time(ready["ready"])}

  def forks(self, env: dict[str, str]) -> bool:
    """Whether a command with environment `env` can be forked from this zygote."""
    return hasattr(os, "fork") and _import_time(env) in self.envs

  def run(self, args, *, env: dict[str, str], cwd: str = ROOT, code: str | None = None,
          timeout: float = 180) -> subprocess.CompletedProcess:
    """`run_real(args, env=env, cwd=cwd, code=code, timeout=timeout)`, forked when `forks(env)`."""
    if not self.forks(env):
      return run_real(args, env=env, cwd=cwd, code=code, timeout=timeout)
    with tempfile.TemporaryDirectory(prefix="pkdot-cli-") as tmp:
      out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
      request = {"args": [str(a) for a in args], "code": code, "env": env, "cwd": os.path.abspath(cwd),
                 "stdout": out, "stderr": err}
      try:
        status = self._serve(request, timeout)
      except BaseException:  # interrupted, or the zygote failed: its replies can no longer be matched to requests
        self.close()
        raise
      output = [_decode(path) for path in (out, err)]
    if status is None:
      raise subprocess.TimeoutExpired(command_line(args, code), timeout, output[0], output[1])
    return subprocess.CompletedProcess(command_line(args, code), status, output[0], output[1])

  def _serve(self, request: dict, timeout: float) -> int | None:
    """The child's exit status (negative: the signal that ended it); None after killing it at the timeout."""
    self._proc.stdin.write(json.dumps(request).encode() + b"\n")
    self._proc.stdin.flush()
    pid = self._receive(time.monotonic() + 60)["pid"]
    try:
      return self._receive(time.monotonic() + timeout)["status"]
    except TimeoutError:
      os.kill(pid, signal.SIGKILL)
      self._receive(time.monotonic() + 60)
      return None

  def _receive(self, deadline: float) -> dict:
    """The zygote's next message; TimeoutError at the deadline, RuntimeError when the zygote is gone."""
    fd = self._proc.stdout.fileno()
    while b"\n" not in self._buffer:
      if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        raise TimeoutError("no answer from the zygote")
      chunk = os.read(fd, 65536)
      if not chunk:
        self._log.seek(0)
        raise RuntimeError(f"the zygote exited ({self._proc.wait()}): {self._log.read().decode(errors='replace')}")
      self._buffer += chunk
    line, self._buffer = self._buffer.split(b"\n", 1)
    return json.loads(line)

  def alive(self) -> bool:
    return self._proc.poll() is None and not self._proc.stdin.closed

  def close(self) -> None:
    """Ends the zygote (its input closed; killed if it has not exited within 30 s)."""
    if self._proc.stdin and not self._proc.stdin.closed:
      self._proc.stdin.close()
    try:
      self._proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.wait()
    self._proc.stdout.close()
    if not self._log.closed:
      self._log.close()


def _decode(path: str) -> str:
  """A captured stream as `subprocess.run(text=True)` returns it: locale encoding, universal newlines."""
  with open(path, "rb") as f:
    data = f.read()
  return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def _import_time(env: dict[str, str]) -> tuple:
  """The variables of `env` that a zygote must share with a command forked from it."""
  return tuple(sorted((k, v) for k, v in env.items() if k not in CALL_TIME_ENV))


_shared: list[Runner] = []


def shared(env: dict[str, str]) -> Runner:
  """This process's runner that forks a command of environment `env`, started at the first such command."""
  _shared[:] = [runner for runner in _shared if runner.alive()]
  for runner in _shared:
    if runner.forks(env):
      return runner
  _shared.append(Runner(env))
  return _shared[-1]


def close_shared() -> None:
  """Ends every zygote this process started."""
  while _shared:
    _shared.pop().close()


atexit.register(close_shared)


# ------------------------------------------------------------------------------------------- the zygote side
def _serve_forever() -> None:
  """Imports WARM_MODULES, says it is ready, then forks a child for each request line until its input ends."""
  requests, replies = os.dup(0), os.dup(1)
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.dup2(2, 1)  # a stray print of an import goes to the log, not into the replies
  os.close(null)
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in pytest's terminal: pytest ends it, closing its input
  sys.path.pop(0)  # this file's folder: a child puts first what the interpreter would for its command
  import importlib
  for name in WARM_MODULES:
    importlib.import_module(name)
  _check_no_backend()
  reply = os.fdopen(replies, "w", buffering=1)
  reply.write(json.dumps({"ready": dict(os.environ)}) + "\n")
  for line in os.fdopen(requests, "rb", buffering=0):
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      os.close(requests)
      os.close(replies)
      _child(request)
    reply.write(json.dumps({"pid": pid}) + "\n")
    reply.write(json.dumps({"status": _wait(pid, requests)}) + "\n")


def _check_no_backend() -> None:
  """A forked child must initialise its own JAX backend: none may exist in the zygote."""
  from jax._src import xla_bridge
  if getattr(xla_bridge, "_backends", None):
    raise RuntimeError(f"importing {WARM_MODULES} initialised a JAX backend")


def _wait(pid: int, requests: int) -> int:
  """The child's exit status; the zygote exits (killing the child) if its input ends meanwhile."""
  child = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
  while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      if child is not None:
        os.close(child)
      return os.waitstatus_to_exitcode(status)
    ready = select.select([requests] + ([child] if child is not None else []), [], [],
                          None if child is not None else 0.05)[0]
    if requests in ready:  # no request comes while a child runs: this is the end of the input
      os.kill(pid, signal.SIGKILL)
      os.waitpid(pid, 0)
      os._exit(0)


def _child(request: dict) -> None:
  """Runs the request's command in this (forked) process and exits with its status."""
  try:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the zygote ignores it
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
      target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
      os.dup2(target, fd)
      os.close(target)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    status = _run_command(request["args"], request["code"])
  except BaseException:  # the runner's own failure: reported like a crash
    traceback.print_exc()
    status = 1
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:
      pass
  os._exit(status)


def _run_command(args: list[str], code: str | None) -> int:
  """`python -m pkdot_jax.main ARGS` / `python -c CODE ARGS` in this process: its exit status."""
  import runpy
  import types
  try:
    if code is None:
      sys.argv = ["-m"] + args
      sys.path.insert(0, os.getcwd())
      sys.modules.pop(MODULE, None)
      runpy.run_module(MODULE, run_name="__main__", alter_sys=True)
    else:
      sys.argv = ["-c"] + args
      sys.path.insert(0, "")
      main = types.ModuleType("__main__")
      sys.modules["__main__"] = main
      exec(compile(code, "<string>", "exec"), main.__dict__)
    status = 0
  except SystemExit as e:
    status = _exit_status(e)
  except BaseException as e:
    e = e.with_traceback(e.__traceback__.tb_next if e.__traceback__ else None)  # from the command's first frame
    sys.excepthook(type(e), e, e.__traceback__)
    status = 1
  threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter exits: its threads joined, then atexit
  atexit._run_exitfuncs()
  return status


def _exit_status(e: SystemExit) -> int:
  """The interpreter's exit status for an uncaught SystemExit (a non-integer code is printed, status 1)."""
  if e.code is None:
    return 0
  if isinstance(e.code, int):
    return e.code & 0xFF
  print(e.code, file=sys.stderr)
  return 1


if __name__ == "__main__":
  _serve_forever()
