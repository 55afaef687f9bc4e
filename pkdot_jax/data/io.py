"""Shared helpers of the tfds builders: a TensorFlow-free builder base, bad-input accounting, subject look-up."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

log = logging.getLogger(__name__)


class BadInputError(ValueError):
  """A manual-download file that cannot be used (missing, unreadable, wrong columns, too short, NaN/Inf)."""


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """GeneratorBasedBuilder that works without TensorFlow and without `importlib_resources`.

  tfds' default `code_path` evaluates `importlib_resources.abc.Traversable`, a package we do not install; the
  builder's source file is all tfds needs it for (the checksums file next to it).
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))


class BadInputLog:
  """Collects bad inputs: raises at once (skip_bad=False) or counts them for the end-of-preparation report."""

  def __init__(self, dataset: str, skip_bad: bool):
    self.dataset = dataset
    self.skip_bad = skip_bad
    self.skipped: list[str] = []

  def bad(self, path, problem: str) -> None:
    """Raises BadInputError("<path>: <problem>") unless skip_bad, in which case the item is recorded."""
    message = f"{path}: {problem}"
    if not self.skip_bad:
      raise BadInputError(f"{self.dataset}: {message} (set skip_bad=True to skip such items and count them)")
    log.warning("%s: skipping %s", self.dataset, message)
    self.skipped.append(message)

  def report(self) -> str:
    """One-line summary (also logged as a warning when anything was skipped)."""
    if not self.skipped:
      return f"{self.dataset}: no bad inputs"
    text = f"{self.dataset}: skipped {len(self.skipped)} bad item(s): " + "; ".join(self.skipped[:20])
    if len(self.skipped) > 20:
      text += f"; ... ({len(self.skipped) - 20} more)"
    log.warning(text)
    return text


def check_finite(values: np.ndarray, path, what: str, log_: BadInputLog) -> bool:
  """True if all finite; otherwise reports '<path>: NaN/Inf in <what>' via log_ and returns False."""
  bad = ~np.isfinite(values)
  if bad.any():
    log_.bad(path, f"{int(bad.sum())} NaN/Inf value(s) in {what}")
    return False
  return True


class InMemorySource:
  """A random-access source whose records are all decoded once and kept in memory (for small datasets, where
  decoding every record again in every epoch and every run costs more than the training)."""

  def __init__(self, source):
    self.dataset_info = getattr(source, "dataset_info", None)
    self.split = getattr(source, "split", "train")
    self._records = [source[i] for i in range(len(source))]

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, i: int) -> dict:
    return self._records[i]


def example_subjects(source, split: str | None = None) -> np.ndarray:
  """(N,) subject ids of a data source, in record order, for `folds.subject_folds`.

  Uses the per-split list stored by our builders in `info.metadata["subject"]` (no decoding); falls back to
  reading the "subject" field of every record for sources without it.
  """
  info = getattr(source, "dataset_info", None)
  split = split or str(getattr(source, "split", "train"))
  metadata = getattr(info, "metadata", None) or {}
  subjects = metadata.get("subject", {}) if hasattr(metadata, "get") else {}
  if split in subjects:
    values = np.asarray(subjects[split])
    if values.shape[0] != len(source):
      raise ValueError(f"metadata lists {values.shape[0]} subjects for split {split!r} but the source has "
                       f"{len(source)} records")
    return values
  return np.asarray([source[i]["subject"] for i in range(len(source))])


def require_columns(header: Sequence[str], wanted: Sequence[str], path, log_: BadInputLog) -> list[int] | None:
  """Column positions of `wanted` in `header` (case-insensitive); reports the missing ones via log_."""
  lowered = [h.strip().lower() for h in header]
  missing = [w for w in wanted if w.lower() not in lowered]
  if missing:
    log_.bad(path, f"missing column(s) {missing}; header has {list(header)}")
    return None
  return [lowered.index(w.lower()) for w in wanted]
