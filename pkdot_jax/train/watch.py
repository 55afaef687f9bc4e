"""What a stage shows while it trains: its console lines, its progress bar and its TensorBoard scalars.

The train loop hands over each window of step metrics when it fetches them to the host (every `log_every`
steps and at the end of an epoch, the only places it synchronises with the device), so watching adds no
device sync. Per epoch the watch keeps the mean of every step term per member (metrics.jsonl's `train_terms`).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

from pkdot_jax import console
from pkdot_jax.train import summaries

_SHOWN_TERMS = ("task_loss", "distill_loss", "extra_loss", "mse", "mmd", "align_loss", "grad_norm")


class StageWatch:
  """Console lines, bar and event files of one stage run (`start_step` > 0: a resumed stage)."""

  def __init__(self, stage: str, stage_dir: str, members: list[str], total_steps: int, steps_per_epoch: int,
               start_step: int, learning_rate: Any, writer: bool, bars: bool = True):
    self.stage, self.members, self.total_steps = stage, list(members), total_steps
    self.steps_per_epoch, self.learning_rate = steps_per_epoch, learning_rate
    self.summaries = summaries.StageSummaries(os.path.join(stage_dir, "tensorboard"), members, start_step, writer)
    self._sums: dict[str, np.ndarray] = {}
    self._count = 0
    self._clips_per_second: float | None = None
    epochs = total_steps // max(steps_per_epoch, 1)
    who = f"{len(members)} members" if len(members) > 1 else f"member {members[0]}"
    if start_step > 0:
      console.info(f"{stage}: resuming at step {start_step} of {total_steps} ({who})")
    else:
      console.info(f"{stage}: training {total_steps} steps ({epochs} epochs x {steps_per_epoch}), {who}, in "
                   f"{stage_dir}")
    from tqdm import tqdm
    self.bar = tqdm(total=total_steps, initial=start_step, desc=stage, dynamic_ncols=True, leave=False,
                    file=sys.stderr, disable=not (bars and writer and console.bars_enabled()))
    self._t0, self._clips = time.time(), 0

  def window(self, first_step: int, host: list[dict[str, np.ndarray]], clips: int) -> None:
    """A window of step metrics on the host (steps first_step, ...), and the clips they trained."""
    self._clips += clips
    elapsed = time.time() - self._t0
    self._clips_per_second = self._clips / elapsed if elapsed > 0 else None
    for metrics in host:
      for term, value in metrics.items():
        if term not in summaries.SKIPPED_TERMS:
          value = np.atleast_1d(np.asarray(value, np.float64))
          self._sums[term] = self._sums.get(term, 0.0) + value
      self._count += 1
    self.summaries.steps(first_step, host, self.learning_rate, self._clips_per_second)
    last = host[-1]
    postfix: dict[str, Any] = {"loss": f"{np.mean(last['loss']):.4f}"}
    if self._clips_per_second is not None:
      postfix["clips/s"] = f"{self._clips_per_second:.0f}"
    if "ot_iterations" in last:
      postfix["sinkhorn_it"] = int(np.max(last["ot_iterations"]))
    self.bar.set_postfix(postfix)
    self.bar.update(len(host))

  def epoch_terms(self) -> dict[str, list[float]]:
    """Per term, the mean over the epoch's steps seen by this process run, per member; then starts afresh."""
    terms = {term: (total / self._count).tolist() for term, total in self._sums.items()} if self._count else {}
    self._sums, self._count = {}, 0
    self._t0, self._clips = time.time(), 0  # clips/s per epoch (the first one includes compilation)
    return terms

  def epoch(self, record: dict[str, Any], select_metric: str) -> None:
    """TensorBoard's val/test scalars and the epoch's one-line summary (means over the members)."""
    self.summaries.epoch(record["step"], record)
    parts = [f"{self.stage} epoch {record['epoch']}/{self.total_steps // self.steps_per_epoch}"]
    terms = record.get("train_terms") or {}
    if "loss" in terms:
      parts.append("loss " + f"{np.mean(terms['loss']):.4f}" + "".join(
          f" {t.removesuffix('_loss')} {np.mean(terms[t]):.4f}" for t in _SHOWN_TERMS if t in terms))
    if "ot_iterations" in terms:
      parts.append(f"sinkhorn iterations {np.mean(terms['ot_iterations']):.0f}, converged "
                   f"{np.mean(terms['ot_converged']):.0%}")
    for split in ("val", "test"):
      values = [m[select_metric] for m in record.get(split) or [] if select_metric in m]
      if values:
        parts.append(f"{split} {select_metric} {np.mean(values):.4f}")
    if self._clips_per_second is not None:
      parts.append(f"{self._clips_per_second:.0f} clips/s")
    mean_of = f" (mean of {len(self.members)} members)" if len(self.members) > 1 else ""
    console.info(" | ".join(parts) + mean_of)

  def close(self, outcome: str | None = None) -> None:
    """Closes the bar and the event file; `outcome`: the stage's last line (e.g. "trained in 12.3 s")."""
    self.bar.close()
    self.summaries.close()
    if outcome:
      console.info(f"{self.stage}: {outcome}")
