"""TensorBoard event files without TensorFlow (tensorboardX writes them), and a reader for them.

Each stage writes to `<stage dir>/tensorboard/` (`tensorboard --logdir WORKDIR` finds every stage of a run):
  train/<term>/<member>      per step: loss, task_loss, distill_loss, extra_loss (and the T-Net's mse / mmd,
                             an MT-PKDOT teacher's head and alignment losses), grad_norm, ot_iterations and
                             ot_converged (Sinkhorn, for the OT-based losses): one tag per member (seed, weight)
  train/learning_rate        per step (the members share the schedule)
  train/clips_per_second     per logging window, at its last step
  val/<metric>/<member>, test/<metric>/<member>     per epoch, at the epoch's last step
A stage resumed from the checkpoint of step N opens its writer with `purge_step` = N + 1, its first step:
TensorBoard then hides what the killed run logged after its last checkpoint, the steps trained again
(`read_scalars` applies the same rule).
Only process 0 writes.
"""

from __future__ import annotations

import glob
import os
import struct
from typing import Any, Callable

import numpy as np

SKIPPED_TERMS = ("finite",)  # internal flags of the step, not measurements


class StageSummaries:
  """The event writer of one stage; `enabled=False` (other processes) makes every call a no-op."""

  def __init__(self, logdir: str, members: list[str], start_step: int, enabled: bool = True):
    self.logdir, self.members, self.enabled = logdir, list(members), enabled
    self._writer: Any = None  # a tensorboardX SummaryWriter while enabled and open
    if enabled:
      from tensorboardX import SummaryWriter
      os.makedirs(logdir, exist_ok=True)
      # The file name carries the start step: a stage resumed within the second it was stopped in gets a file
      # of its own (the name's timestamp has whole seconds), and the reader orders them by it.
      self._writer = SummaryWriter(logdir, purge_step=start_step + 1 if start_step > 0 else None, flush_secs=10,
                                   filename_suffix=f".step{start_step:09d}.pid{os.getpid()}")

  def steps(self, first_step: int, host: list[dict[str, np.ndarray]], learning_rate: Any = None,
            clips_per_second: float | None = None) -> None:
    """Scalars of consecutive steps `first_step, first_step + 1, ...` (host copies of the step metrics, each
    value of shape (members,) or () with one member); `learning_rate`: a float or a schedule of the step."""
    if not self.enabled:
      return
    for i, metrics in enumerate(host):
      step = first_step + i
      for term, value in metrics.items():
        if term in SKIPPED_TERMS:
          continue
        self._members_scalars(f"train/{term}", np.atleast_1d(np.asarray(value, np.float64)), step)
      if learning_rate is not None:
        rate = learning_rate(step - 1) if callable(learning_rate) else learning_rate  # optax counts from 0
        self._writer.add_scalar("train/learning_rate", float(rate), step)
    if clips_per_second is not None and host:
      self._writer.add_scalar("train/clips_per_second", float(clips_per_second), first_step + len(host) - 1)

  def epoch(self, step: int, record: dict[str, Any]) -> None:
    """The validation and test metrics of an epoch's record (a list of per-member dicts per split)."""
    if not self.enabled:
      return
    for split in ("val", "test"):
      for m, metrics in enumerate(record.get(split) or []):
        for name, value in metrics.items():
          if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "num_examples":
            self._writer.add_scalar(f"{split}/{name}/{self.members[m]}", float(value), step)
    self._writer.flush()

  def _members_scalars(self, prefix: str, values: np.ndarray, step: int) -> None:
    if values.size != len(self.members):
      raise ValueError(f"{prefix}: {values.size} values for {len(self.members)} members at step {step}")
    for name, value in zip(self.members, values):
      self._writer.add_scalar(f"{prefix}/{name}", float(value), step)

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


# --------------------------------------------------------------------------------------------------- reader
def _records(path: str):
  """The records of one TFRecord-framed event file: uint64 length, its masked CRC, data, the data's CRC. A
  truncated last record (a writer killed mid-write) ends the file, as in TensorBoard."""
  with open(path, "rb") as f:
    data = f.read()
  offset = 0
  while offset + 12 <= len(data):
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    end = offset + 12 + length + 4
    if end > len(data):
      return
    yield data[offset + 12:offset + 12 + length]
    offset = end


def read_scalars(logdir: str, on_event: Callable[[Any], None] | None = None) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value), ...]} of every event file under `logdir` (oldest first), with TensorBoard's purge
  rule: a session start at step s (a resumed writer's `purge_step`) drops the values logged at steps >= s."""
  from tensorboardX.proto import event_pb2

  scalars: dict[str, list[tuple[int, float]]] = {}
  for path in sorted(glob.glob(os.path.join(logdir, "**", "events.out.tfevents.*"), recursive=True),
                     key=lambda p: (int(os.path.basename(p).split(".")[3]), p)):  # timestamp, start step
    for raw in _records(path):
      event = event_pb2.Event.FromString(raw)
      if on_event is not None:
        on_event(event)
      if event.HasField("session_log") and event.session_log.status == event.session_log.START:
        scalars = {tag: [(s, v) for s, v in values if s < event.step] for tag, values in scalars.items()}
      for value in event.summary.value:
        if value.HasField("simple_value"):
          scalars.setdefault(value.tag, []).append((int(event.step), float(value.simple_value)))
  return scalars
