"""Test setup, before JAX is imported: eight fake CPU devices (so sharding tests run anywhere), cheaper XLA:CPU
compilation, and a compilation cache private to this test session (tests that build the same step program
compile it once)."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags = (_flags + " --xla_force_host_platform_device_count=8").strip()
# The suite's time is mostly XLA:CPU compiling tiny programs that then run a few steps: LLVM's expensive passes
# are skipped (IEEE float semantics unchanged; 15% less CPU for a compile-bound training test, same results).
if "xla_llvm_disable_expensive_passes" not in _flags:
  _flags += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  # XLA:CPU's older elemental emitters instead of its fusion emitters: a third less CPU for the smoke pipeline's
  # compiles (the same IEEE arithmetic). An XLA without the flag aborts on it, so it is tried once first (the
  # xdist workers and the tests' subprocesses inherit the result through XLA_FLAGS).
  _probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], capture_output=True, timeout=120,
                          env=dict(os.environ, XLA_FLAGS="--xla_cpu_use_fusion_emitters=false", JAX_PLATFORMS="cpu"))
  if _probe.returncode == 0:
    _flags += " --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = _flags
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # pytest-xdist workers inherit the controller's directory
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="pkdot-test-xla-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
# Every program is cached, however quick its compile: the training tests, the xdist workers and the `pkdot`
# subprocesses (which inherit these variables) build the same small init, evaluation and step programs again and
# again, and under a loaded CI machine even a "0.1 s" compile takes seconds.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


# The CI runs the suite on 2 workers with `--dist loadfile`: each file runs whole on one worker, files are handed
# out in collection order. These files train end to end (minutes each on the 2-core CI machine): they are
# collected first, the longest first, so that none of them starts last and leaves the other worker idle while it
# runs; every other file keeps its place. Paths relative to tests/.
LONG_FILES = ("train/test_pipeline.py", "train/test_multiprocess.py", "configs/test_paper_configs.py",
              "train/test_preemption.py", "study/test_sweep_and_demo.py",
              "study/test_concurrent_shards.py", "train/test_records.py")


def pytest_configure(config):
  # pytest-xdist would otherwise reorder the files by their number of tests (a one-test file that runs for
  # minutes then starts last).
  if hasattr(config.option, "loadscopereorder"):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  rank = {os.path.join(tests_dir, *name.split("/")): i for i, name in enumerate(LONG_FILES)}
  items.sort(key=lambda item: rank.get(str(item.path), len(rank)))  # stable: the other files keep their order


def pytest_sessionfinish(session, exitstatus):
  # The warm processes that serve the `pkdot` commands of the CLI tests (tests/cli_runner.py), also after Ctrl-C.
  runner = sys.modules.get("cli_runner")
  if runner is not None:
    runner.close_shared()
