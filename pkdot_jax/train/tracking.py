"""What a stage tracks across epochs, per member, and carries in its checkpoints: the best validation epoch
and its variables (`Best`), and the current epoch's step losses (`EpochLoss`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax.train.state import TrainState


@dataclasses.dataclass
class Best:
  """Per member: the best validation score so far, its epoch (-1: none yet) and its variables (host copies:
  the live state's buffers are donated to the next step)."""
  score: np.ndarray
  epoch: np.ndarray
  variables: Any

  @classmethod
  def empty(cls, state: TrainState, num_members: int) -> "Best":
    return cls(np.full(num_members, -np.inf), np.full(num_members, -1, np.int64),
               jax.tree.map(np.array, state.variables()))

  def update(self, scores: np.ndarray, epoch: int, variables: Any, vmapped: bool) -> None:
    improved = scores > self.score
    self.score = np.where(improved, scores, self.score)
    self.epoch = np.where(improved, epoch, self.epoch)
    if not vmapped:
      self.variables = jax.tree.map(_copy, variables) if bool(improved[0]) else self.variables
      return

    def pick(new, old):
      xp = np if isinstance(new, np.ndarray) and isinstance(old, np.ndarray) else jnp  # host members on CPUs
      return xp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    self.variables = jax.tree.map(pick, variables, self.variables)

  def tree(self) -> dict[str, Any]:
    """What a checkpoint stores (host arrays: every process holds the same, and orbax writes them once)."""
    return {"score": np.asarray(self.score, np.float32), "epoch": np.asarray(self.epoch, np.int32),
            "variables": self.variables}

  @classmethod
  def from_tree(cls, tree: dict[str, Any]) -> "Best":
    return cls(np.asarray(tree["score"]), np.asarray(tree["epoch"]), tree["variables"])


def _copy(x):
  return np.array(x) if isinstance(x, np.ndarray) else jnp.copy(x)


@dataclasses.dataclass
class EpochLoss:
  """Per member: the sum (float64) and count of the current epoch's step losses. Checkpoints carry it, so an
  epoch resumed mid-way reports the mean over all its steps, bit for bit the uninterrupted run's."""
  total: np.ndarray
  count: int

  @classmethod
  def empty(cls, num_members: int) -> "EpochLoss":
    return cls(np.zeros(num_members, np.float64), 0)

  def add(self, loss) -> None:
    self.total = self.total + np.asarray(loss, np.float64).reshape(-1)
    self.count += 1

  def mean(self) -> list[float] | None:
    return (self.total / self.count).tolist() if self.count else None

  def tree(self) -> dict[str, np.ndarray]:
    return {"sum": np.array(self.total, np.float64), "count": np.asarray(self.count, np.int64)}

  @classmethod
  def from_tree(cls, tree: dict[str, Any]) -> "EpochLoss":
    return cls(np.asarray(tree["sum"], np.float64), int(tree["count"]))


def checkpoint_tree(state: TrainState, best: Best, epoch_loss: EpochLoss) -> dict[str, Any]:
  """What a checkpoint of the stage stores: the state (without the frozen model), the best, the epoch's loss."""
  return {"state": state.checkpoint_tree(), "best": best.tree(), "epoch_loss": epoch_loss.tree()}


def scores(record: dict[str, Any], metric: str, mode: str, num_members: int) -> np.ndarray:
  """Per member, the epoch record's validation `metric` as a score to maximise (-inf without validation)."""
  if "val" not in record:
    return np.full(num_members, -np.inf)
  values = np.asarray([m[metric] for m in record["val"]], np.float64)
  return -values if mode == "min" else values
