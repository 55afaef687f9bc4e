"""Wall and compile seconds of the runs of a study's sweeps, appended to <root>/timing.jsonl and read back.

Compile seconds come from jax.monitoring's duration events (tracing, lowering, backend compilation; with a warm
persistent cache, loading a program counts instead). Each `RunTimer` listens only while its `with` block runs:
it registers its own listener on entry and unregisters it on exit, so no count outlives its timer.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax

from pkdot_jax.train import records

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration", "/jax/compilation_cache/cache_retrieval_time_sec")


class RunTimer:
  """The `after_run` of a sweep (`sweep.run_sweep`) inside `with RunTimer(root, phase) as timer:`: per finished
  run, the wall seconds and the compile seconds since the previous one, appended to timing.jsonl."""

  def __init__(self, root: str, phase: str):
    self.path = records.demo_file(root, "timing")
    self.phase = phase
    self.compile_seconds = 0.0  # compile events seen while listening
    self._listener = self._on_event  # one bound method: the object registered and unregistered
    self.t0, self.c0 = time.time(), 0.0

  def _on_event(self, event: str, duration_secs: float, **_: str | int) -> None:
    if event in COMPILE_EVENTS:
      self.compile_seconds += float(duration_secs)

  def __enter__(self) -> RunTimer:
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    self.start()
    return self

  def __exit__(self, *exc_info: Any) -> None:
    jax.monitoring.unregister_event_duration_listener(self._listener)

  def start(self) -> None:
    self.t0, self.c0 = time.time(), self.compile_seconds

  def __call__(self, name: str) -> None:
    wall, compile_s = time.time() - self.t0, self.compile_seconds - self.c0
    # A run already finished (resumed study) is not started: no new run_info.json entry; keep its first record.
    info = records.run_info_path(records.run_dir(os.path.dirname(self.path), name))
    if os.path.exists(info) and os.path.getmtime(info) >= self.t0 - 1e-3:
      records.append_jsonl(self.path, {"phase": self.phase, "run": name, "wall_s": wall, "compile_s": compile_s})
    self.start()


def read_timing(root: str) -> dict[tuple[str, str], dict[str, float]]:
  """{(phase, run): {"wall_s", "compile_s"}}, the last record of each run."""
  return {(r["phase"], r["run"]): r for r in records.read_jsonl(records.demo_file(root, "timing"))}
