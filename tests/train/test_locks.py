"""Directory claims (`locks`): refused or waited for while another live process holds them, named in the
message, re-entrant in one process, and free again the moment the holder dies (SIGKILL: no stale lock). The
holders are small child processes that hold a claim until told to go on; every child is reaped."""

import errno
import os
import selectors
import subprocess
import sys

import pytest

from pkdot_jax.train import locks

HOLDER = """
import sys
from pkdot_jax.train import locks
with locks.claim(sys.argv[1], "workdir", wait=sys.argv[2] == "wait"):
  print("held", flush=True)
  sys.stdin.readline()
"""


def _start(directory, wait=False):
  return subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), "wait" if wait else "no"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _line(stream, timeout=120):
  """The next line of a child's pipe, waiting at most `timeout` seconds (select, no sleep)."""
  with selectors.DefaultSelector() as selector:
    selector.register(stream, selectors.EVENT_READ)
    if not selector.select(timeout=timeout):
      raise TimeoutError("the child printed nothing in time")
  return stream.readline()


def _reap(*procs):
  for proc in procs:
    if proc.poll() is None:
      proc.kill()
    proc.wait(timeout=30)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
      stream.close()


def test_a_claimed_directory_is_refused_naming_the_holder_and_freed_when_it_dies(tmp_path):
  holder = _start(tmp_path)
  try:
    assert _line(holder.stdout).strip() == "held"
    with pytest.raises(locks.InUse, match=rf"workdir {tmp_path} is in use by pid {holder.pid} on host ") as e:
      with locks.claim(str(tmp_path), "workdir"):
        pytest.fail("claimed a directory another process holds")
    assert e.value.holder["pid"] == holder.pid
    holder.kill()  # a crash: nothing releases the claim but the kernel
    holder.wait(timeout=30)
    with locks.claim(str(tmp_path), "workdir"):  # free at once, no stale lock
      with locks.claim(str(tmp_path), "workdir"):  # re-entrant in one process
        assert locks.read_holder(os.path.join(tmp_path, locks.LOCK_FILE))["pid"] == os.getpid()
      assert locks.held(str(tmp_path))
    assert not locks.held(str(tmp_path))
    assert locks.read_holder(os.path.join(tmp_path, locks.LOCK_FILE)) is None  # no stale name left either
  finally:
    _reap(holder)


def test_a_waiting_claim_names_the_holder_and_gets_the_directory_once_released(tmp_path):
  first, second = _start(tmp_path), None
  try:
    assert _line(first.stdout).strip() == "held"
    second = _start(tmp_path, wait=True)
    waiting = _line(second.stderr)  # printed before it blocks
    assert waiting.startswith(f"pkdot: waiting for workdir {tmp_path}, in use by pid {first.pid} on host ")
    first.stdin.write("go\n")
    first.stdin.flush()
    assert first.wait(timeout=60) == 0
    assert _line(second.stdout).strip() == "held"  # the waiter got it
    second.stdin.write("go\n")
    second.stdin.flush()
    assert second.wait(timeout=60) == 0
  finally:
    _reap(first, *([second] if second else []))


def test_a_read_only_data_dir_is_read_unclaimed(tmp_path, monkeypatch):
  """A prepared data set on a read-only mount is read without a claim (nobody can build there); a workdir
  claim there fails with the filesystem's error."""
  real_open = os.open

  def read_only_open(path, flags, *args):
    if flags & os.O_CREAT:
      raise OSError(errno.EROFS, "Read-only file system", path)
    return real_open(path, flags, *args)
  monkeypatch.setattr(locks.os, "open", read_only_open)
  with locks.claim(str(tmp_path), "data dir", wait=True, read_only_ok=True):
    assert locks.held(str(tmp_path))
  assert not locks.held(str(tmp_path))
  with pytest.raises(OSError, match="Read-only"):
    with locks.claim(str(tmp_path), "workdir"):
      pass
