"""Shared helpers of the tfds builders: a TensorFlow-free builder base, bad-input accounting, a record of the
manual-download source for refusing stale prepared sets, subject look-up."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from pkdot_jax import errors

log = logging.getLogger(__name__)
T = TypeVar("T")


class BadInputError(errors.UserError, ValueError):
  """A manual-download file that cannot be used (missing, unreadable, wrong columns, too short, NaN/Inf)."""


class StaleDatasetError(errors.UserError, ValueError):
  """A prepared dataset directory was built from another source (manual dir, files or options) than asked for."""


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """GeneratorBasedBuilder that works without TensorFlow and without `importlib_resources`.

  tfds' default `code_path` evaluates `importlib_resources.abc.Traversable`, a package we do not install; the
  builder's source file is all tfds needs it for (the checksums file next to it).
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(inspect.getfile(cls))

  def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs) -> None:
    with _shuffle_buffer_in_memory():
      super().download_and_prepare(download_dir=download_dir, download_config=download_config, **kwargs)


@contextlib.contextmanager
def _shuffle_buffer_in_memory() -> Iterator[None]:
  """Without TensorFlow, keeps tfds's writer from spilling its shuffle buffer to disk.

  Past 1 GB of serialized records (a BioVid-sized set at the paper's shapes is about 2 GB), the writer moves its
  buffer into temporary bucket files written with `tf.io.gfile`, which imports TensorFlow: the preparation
  failed there. Without TensorFlow the whole buffer stays in memory instead, so peak memory during preparation
  is about the prepared set's size. With TensorFlow installed, tfds's own behaviour is kept."""
  if importlib.util.find_spec("tensorflow") is not None:
    yield
    return
  from tensorflow_datasets.core import shuffle
  previous = shuffle.MAX_MEM_BUFFER_SIZE
  shuffle.MAX_MEM_BUFFER_SIZE = sys.maxsize
  try:
    yield
  finally:
    shuffle.MAX_MEM_BUFFER_SIZE = previous


class BadInputLog:
  """Collects bad inputs: raises at once (skip_bad=False) or counts them for the end-of-preparation report."""

  def __init__(self, dataset: str, skip_bad: bool, warn: bool = True):
    self.dataset = dataset
    self.skip_bad = skip_bad
    self.warn = warn  # False: record without logging (`pkdot data check` prints the list itself)
    self.skipped: list[str] = []
    self.problems: list[tuple[str, str]] = []  # (file, problem) of every recorded item

  def bad(self, path, problem: str, cause: BaseException | None = None) -> None:
    """Raises BadInputError("<path>: <problem>") unless skip_bad, in which case the item is recorded."""
    message = f"{path}: {problem}"
    if not self.skip_bad:
      raise BadInputError(f"{self.dataset}: {message} (set skip_bad=True to skip such items and count them)") \
          from cause
    if self.warn:
      log.warning("%s: skipping %s", self.dataset, message)
    self.skipped.append(message)
    self.problems.append((str(path), problem))

  def decode(self, path, what: str, fn: Callable[[], T]) -> T | None:
    """fn() (which decodes / parses the file `path`), or None after reporting '<path>: cannot decode <what>'.

    Every error of the decoding libraries (PIL's OSError / SyntaxError, PyAV's FFmpegError, numpy's ValueError,
    ...) becomes a bad input naming the file, so that skip_bad can skip it. fn must finish decoding (no lazy
    image left to load later). Our own BadInputError and MemoryError pass through.
    """
    try:
      return fn()
    except (BadInputError, MemoryError):
      raise
    except Exception as error:  # noqa: BLE001 -- decoders raise their own hierarchies; the file is named
      self.bad(path, f"cannot decode {what}: {type(error).__name__}: {error}", cause=error)
      return None

  def report(self) -> str:
    """One-line summary (also logged as a warning when anything was skipped)."""
    if not self.skipped:
      return f"{self.dataset}: no bad inputs"
    text = f"{self.dataset}: skipped {len(self.skipped)} bad item(s): " + "; ".join(self.skipped[:20])
    if len(self.skipped) > 20:
      text += f"; ... ({len(self.skipped) - 20} more)"
    if self.warn:
      log.warning(text)
    return text


def check_finite(values: np.ndarray, path, what: str, log_: BadInputLog, *, first_line: int | None = None,
                 columns: Sequence[str] | None = None) -> bool:
  """True if all finite; otherwise reports '<path>: NaN/Inf in <what>' via log_ and returns False.

  first_line: the file's line number of row 0 of `values` (rows are consecutive lines), to name the first bad
  line; columns: the names of the columns of a 2-D `values`, to name its field.
  """
  bad = ~np.isfinite(values)
  if bad.any():
    where = ""
    if first_line is not None:
      row, col = np.argwhere(bad.reshape(bad.shape[0], -1))[0]
      where = f" (first on line {first_line + int(row)}"
      where += f", field {columns[int(col)]!r})" if columns is not None else ")"
    log_.bad(path, f"{int(bad.sum())} NaN/Inf value(s) in {what}{where}")
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


# ---------------------------------------------------------------------------------------------------------------
# The source of a prepared manual-download dataset, recorded at build time and compared on reuse.

SOURCE_KEY = "source"


def _walk_files(top: str) -> Iterable[tuple[str, int]]:
  """(path, size) of every file under `top` (or `top` itself), directories and their entries in sorted order."""
  if os.path.isfile(top):
    yield top, os.stat(top).st_size
    return
  try:
    entries = sorted(os.scandir(top), key=lambda e: e.name)
  except (FileNotFoundError, NotADirectoryError):
    return
  for entry in entries:
    if entry.is_dir():
      yield from _walk_files(entry.path)
    elif entry.is_file():
      yield entry.path, entry.stat().st_size


def config_options(config: Any, base: type) -> dict:
  """The fields a dataclass builder config adds to `base` (tfds.core.BuilderConfig), JSON-normalised."""
  names = [f.name for f in dataclasses.fields(config) if f.name not in {b.name for b in dataclasses.fields(base)}]
  return json.loads(json.dumps({name: getattr(config, name) for name in names}, sort_keys=True))


def source_record(manual_dir, inputs: Sequence, options: dict) -> dict:
  """Where a dataset is built from: the absolute manual dir, a digest of its input files and the options.

  inputs: the files and folders (walked recursively) that the builder reads; the digest covers each file's path
  relative to manual_dir and its size (not its content: a full hash of the videos would cost as much as a build).
  """
  manual = os.path.abspath(os.fspath(manual_dir))
  digest, count, total = hashlib.sha256(), 0, 0
  for top in sorted({os.path.abspath(os.fspath(p)) for p in inputs}):
    for path, size in _walk_files(top):
      digest.update(f"{os.path.relpath(path, manual)}\0{size}\n".encode())
      count, total = count + 1, total + size
  return {"manual_dir": manual, "files_sha256": digest.hexdigest(), "num_files": count, "total_bytes": total,
          "options": options}


def _describe_files(record: dict) -> str:
  return f"{record.get('num_files')} files, {record.get('total_bytes')} bytes"


def check_source(dataset: str, data_path, recorded: dict | None, manual_dir,
                 current: Callable[[], dict]) -> None:
  """Refuses (StaleDatasetError) to reuse the prepared `data_path` unless it was built from the same source.

  recorded: the record stored at build time (None: built without one, so it cannot be checked and is refused).
  current(): the record of the source asked for now. When that is the recorded manual dir but nothing of the
  download is left there (deleted after preparing), the prepared set is reused with a warning.
  """
  manual = os.path.abspath(os.fspath(manual_dir))
  how = (f"To rebuild from {manual}, delete {data_path} (or pass another data_dir).")
  if not recorded:
    raise StaleDatasetError(
        f"{dataset}: {data_path} is a prepared set without a record of the manual dir, files and options it was "
        f"built from, so it cannot be checked against manual_dir={manual}. {how}")
  recorded = dict(recorded)
  now = current()
  same_path = recorded.get("manual_dir") == now["manual_dir"]
  if same_path and now["num_files"] == 0:
    log.warning("%s: reusing %s without checking it: its source %s no longer holds the input files", dataset,
                data_path, manual)
    return
  differences = []
  if not same_path:
    differences.append(f"manual dir: prepared from {recorded.get('manual_dir')}, asked for {now['manual_dir']}")
  if recorded.get("files_sha256") != now["files_sha256"]:
    differences.append(f"file list (relative paths and sizes): prepared from {_describe_files(recorded)}, "
                       f"{now['manual_dir']} now has {_describe_files(now)}")
  old_options = dict(recorded.get("options") or {})
  changed = sorted(k for k in set(old_options) | set(now["options"]) if old_options.get(k) != now["options"].get(k))
  if changed:
    differences.append("options: " + ", ".join(
        f"{k} prepared with {old_options.get(k)!r}, asked for {now['options'].get(k)!r}" for k in changed))
  if not differences:
    return
  only_path_differs = len(differences) == 1 and not same_path
  hint = how
  if only_path_differs:
    hint = (f"{how} The file lists and options match (a moved or copied download?): to reuse the prepared set, "
            f"pass manual_dir={recorded.get('manual_dir')}.")
  raise StaleDatasetError(
      f"{dataset}: refusing to reuse {data_path}: it was built from a different source than asked for, so its "
      f"examples may be stale. Differences: " + "; ".join(differences) + f". {hint}")


class ManualDownloadBuilder(ArrayRecordBuilder, skip_registration=True):
  """ArrayRecordBuilder of a manual download that records its source and refuses to reuse a stale prepared set.

  Subclasses implement `source_inputs(manual_dir)` (the files / folders they read) and call
  `self.record_source(manual_dir)` in `_split_generators`. `download_and_prepare` then, when the prepared
  directory exists (and the download mode does not overwrite it), compares the stored record with the requested
  manual dir and raises StaleDatasetError on any difference instead of returning the old examples; it never
  deletes a prepared set by itself (rebuilding means deleting the directory named in the error).
  """

  def source_inputs(self, manual_dir: str) -> Sequence:
    raise NotImplementedError

  def _source_record(self, manual_dir) -> dict:
    options = config_options(self.builder_config, tfds.core.BuilderConfig)
    return source_record(manual_dir, self.source_inputs(os.path.abspath(os.fspath(manual_dir))), options)

  def record_source(self, manual_dir) -> None:
    self.info.metadata[SOURCE_KEY] = self._source_record(manual_dir)

  def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs) -> None:
    config = download_config or tfds.download.DownloadConfig()
    mode = tfds.download.GenerateMode(config.download_mode)
    if self.data_path.exists() and not mode.overwrite_dataset and config.manual_dir is not None:
      metadata = dict(self.info.metadata.items())  # items(), not get(): tfds loads the stored metadata lazily
      check_source(self.name, self.data_path, metadata.get(SOURCE_KEY), config.manual_dir,
                   lambda: self._source_record(config.manual_dir))
    super().download_and_prepare(download_dir=download_dir, download_config=download_config, **kwargs)
