"""Test setup, before JAX is imported: eight fake CPU devices (so sharding tests run anywhere), cheaper XLA:CPU
compilation, and a compilation cache private to this test session (tests that build the same step program
compile it once)."""

import atexit
import os
import shutil
import tempfile

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  _flags = (_flags + " --xla_force_host_platform_device_count=8").strip()
# The suite's time is mostly XLA:CPU compiling tiny programs that then run a few steps: LLVM's expensive passes
# are skipped (IEEE float semantics unchanged; 15% less CPU for a compile-bound training test, same results).
if "xla_llvm_disable_expensive_passes" not in _flags:
  _flags += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = _flags
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:  # pytest-xdist workers inherit the controller's directory
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="pkdot-test-xla-cache-")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
