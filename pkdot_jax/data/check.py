"""`pkdot data check`: read a manual download the way its builder will, before hours of preparation and training.

The check runs the builder's own scanning and loading code (`biovid.scan` / `load_samples`, `affwild2.scan` /
`load_clips`) with a log that records every bad file instead of stopping at the first one, keeps no decoded
pixels (one sample at a time), and prints: the subjects, the samples per class, the split sizes of the
configured folds (the same fold functions and arguments as the trainer), every file that would be skipped or
refuse the build with its reason, and the size the prepared records will take (the mean serialized size of an
evenly spread subset of the examples, times their number). It writes nothing.

`run(config)` prints the report and returns when the set can be built as configured; otherwise it raises
ValueError after the report, whose one line `pkdot` prints as `pkdot: error: ...` (exit status 2).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import tempfile
from collections.abc import Callable, Iterable

import numpy as np

from pkdot_jax import data as data_lib
from pkdot_jax import errors as errors_lib
from pkdot_jax.data import folds as folds_lib
from pkdot_jax.data import io as io_lib

SIZE_SAMPLES = 48  # examples serialized to estimate the prepared size


@dataclasses.dataclass
class SplitFound:
  """The usable examples of one builder split: subject id, class (None for regression), subject name."""
  subjects: list[int] = dataclasses.field(default_factory=list)
  labels: list = dataclasses.field(default_factory=list)
  names: list[str] = dataclasses.field(default_factory=list)
  sizes: list[int] = dataclasses.field(default_factory=list)  # serialized bytes of the sampled examples


@dataclasses.dataclass
class Found:
  """What the scan found: per builder split, the examples; the bad files; a fatal error; the class names."""
  splits: dict[str, SplitFound]
  problems: list[tuple[str, str]]
  fatal: str | None
  class_names: tuple[str, ...]
  listed: dict[str, int]  # examples the scan listed per split, before decoding


def _builder_config(dcfg):
  """The builder config that `config.data` prepares (the same call as `data.prepare`)."""
  module = data_lib.dataset(dcfg.name).load()
  return module.make_config(dcfg.config_name, **dict(dcfg.get("overrides", {})))


def _builder(name: str, builder_config, data_dir: str):
  cls = data_lib.dataset(name).builder_class()
  absl_log = logging.getLogger("absl")
  level = absl_log.level
  absl_log.setLevel(logging.ERROR)  # "Using custom data configuration" for every override
  try:
    return cls(data_dir=data_dir, config=builder_config, file_format="array_record")
  finally:
    absl_log.setLevel(level)


def _examples(name: str, module, builder_config, found_scan, bad) -> dict[str, tuple[int, Iterable[dict]]]:
  """{split: (number listed, iterator of decoded examples)} from the builder's own loading functions."""
  if name == "biovid":
    return {"train": (len(found_scan.samples), module.load_samples(found_scan, builder_config, bad))}
  return {split: (len(clips), module.load_clips(clips, found_scan.frames_root, builder_config, bad))
          for split, clips in found_scan.clips.items()}


def scan_download(config, progress: Callable[[str], None] | None = None) -> Found:
  """Runs the builder's scan and loads every example once (discarding the pixels) with bad files recorded."""
  dcfg = config.data
  module = data_lib.dataset(dcfg.name).load()
  builder_config = _builder_config(dcfg)
  bad = io_lib.BadInputLog(dcfg.name, skip_bad=True, warn=False)
  class_names = tuple(module.builder.LEVEL_NAMES[k] for k in builder_config.levels) if dcfg.name == "biovid" else ()
  out = Found({}, bad.problems, None, class_names, {})
  manual_dir = os.path.expanduser(dcfg.manual_dir)
  with tempfile.TemporaryDirectory() as tmp:
    features = _builder(dcfg.name, builder_config, tmp).info.features
    try:
      found_scan = module.scan(manual_dir, builder_config, bad)
      examples = _examples(dcfg.name, module, builder_config, found_scan, bad)
      subject_ids = ({n: i for i, n in enumerate(found_scan.subject_names)} if dcfg.name == "biovid" else None)
      for split, (listed, iterator) in examples.items():
        out.listed[split] = listed
        every = max(1, listed // SIZE_SAMPLES)
        found = out.splits[split] = SplitFound()
        for k, example in enumerate(iterator):
          name = example.get("subject_name", example.get("video_name"))
          found.subjects.append(subject_ids[name] if subject_ids is not None else int(example["subject"]))
          found.names.append(name)
          found.labels.append(int(example["label"]) if "label" in example else None)
          if k % every == 0:
            example = dict(example, subject=0, index=k, video_id=int(example.get("video_id", k)))
            found.sizes.append(len(features.serialize_example(example)))
          if progress and (k + 1) % 500 == 0:
            progress(f"{split}: {k + 1} of {listed} read")
    except io_lib.BadInputError as error:
      out.fatal = str(error)
  return out


def _count(values, class_names) -> str:
  counts = collections.Counter(values)
  return ", ".join(f"{name} {counts.get(k, 0)}" for k, name in enumerate(class_names))


def _describe(split: SplitFound, indices: np.ndarray, class_names) -> str:
  subjects = np.asarray(split.subjects)[indices]
  text = f"{np.unique(subjects).size} subjects, {indices.size} samples"
  if class_names:
    text += f" ({_count(np.asarray(split.labels)[indices].tolist(), class_names)})"
  return text


def fold_lines(config, found: Found) -> list[str]:
  """The split sizes of every configured fold (raises ValueError where the fold functions refuse the set)."""
  from pkdot_jax.train import input as input_lib  # the trainer's protocol helpers
  dcfg = config.data
  select_on_test = bool(dcfg.get("select_on_test", False))
  if dcfg.protocol == "official":
    if "validation" not in found.splits:
      raise errors_lib.ConfigError(f"config.data.protocol='official' needs an official validation split; "
                                   f"{dcfg.name!r} has {sorted(found.splits)}")
    train = found.splits["train"]
    train_idx, val_idx = input_lib._holdout_subjects(  # pylint: disable=protected-access
        np.asarray(train.subjects), float(dcfg.val_fraction), int(dcfg.fold_seed))
    test = found.splits["validation"]
    parts = [("train", train, train_idx), ("val", train, val_idx), ("test", test, np.arange(len(test.subjects)))]
    if select_on_test:
      parts = [("train", train, np.sort(np.concatenate([train_idx, val_idx]))), ("val = test", test, parts[2][2])]
    head = (f"official split (val_fraction {dcfg.val_fraction}, fold_seed {dcfg.fold_seed}; subjects are videos):")
    return [head, "  " + " | ".join(f"{n} {_describe(s, i, ())}" for n, s, i in parts)]
  split = found.splits["train"]
  subjects = np.asarray(split.subjects)
  if dcfg.protocol == "subject":
    folds = folds_lib.subject_folds(subjects, dcfg.num_folds, dcfg.val_fraction, dcfg.fold_seed)
  else:
    labels = np.asarray(split.labels) if found.class_names else None
    folds = folds_lib.authors_clip_folds(subjects.size, dcfg.num_folds, dcfg.val_fraction, dcfg.fold_seed,
                                         labels=labels)
  lines = [f"folds: protocol {dcfg.protocol!r}, {dcfg.num_folds} folds, val_fraction {dcfg.val_fraction}, "
           f"fold_seed {dcfg.fold_seed}" + (", select_on_test (val = test)" if select_on_test else "") +
           f"; the configured fold is {dcfg.fold} (*)"]
  for k, (train_idx, val_idx, test_idx) in enumerate(folds):
    parts = [("train", train_idx), ("val", val_idx), ("test", test_idx)]
    if select_on_test:  # the trainer's select_on_test: validation goes back into training, selection on test
      parts = [("train", np.sort(np.concatenate([train_idx, val_idx]))), ("val = test", test_idx)]
    mark = "*" if k == dcfg.fold else " "
    lines.append(f" {mark}fold {k}: " + " | ".join(f"{n} {_describe(split, i, found.class_names)}"
                                                   for n, i in parts))
  return lines


def _size(num_bytes: float) -> str:
  for unit in ("B", "KB", "MB", "GB"):
    if num_bytes < 1000 or unit == "GB":
      return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{int(num_bytes)} B"
    num_bytes /= 1000
  raise AssertionError


def report(config, found: Found) -> tuple[list[str], list[str]]:
  """(report lines, reasons the set cannot be built as configured; empty when it can)."""
  dcfg = config.data
  builder_config = _builder_config(dcfg)
  lines = [f"dataset {dcfg.name}, builder config {builder_config.name}, manual dir {dcfg.manual_dir}"]
  errors = [] if found.fatal is None else [found.fatal]
  skip_bad = bool(builder_config.skip_bad)
  if found.problems and not skip_bad:
    errors.append(f"{len(found.problems)} bad file(s), the first {found.problems[0][0]}: {found.problems[0][1]}")
  for name, split in found.splits.items():
    what = "subjects" if dcfg.name == "biovid" else "videos"
    lines.append(f"{name}: {len(set(split.names))} {what}, {len(split.subjects)} usable of {found.listed[name]} "
                 "listed samples")
    if found.class_names:
      lines.append(f"  samples per class: {_count(split.labels, found.class_names)}")
    if not split.subjects:
      errors.append(f"no usable samples in split {name!r}")
  if found.fatal is None and all(split.subjects for split in found.splits.values()):
    try:
      lines += fold_lines(config, found)
    except ValueError as error:
      errors.append(f"the configured folds cannot be made: {error}")
  if found.problems:
    effect = ("skipped (skip_bad=True)" if skip_bad else
              "refused: the build stops at the first (skip_bad=False; set skip_bad=True in config.data.overrides "
              "to skip them)")
    lines.append(f"bad files: {len(found.problems)}, {effect}:")
    lines += [f"  {path}: {problem}" for path, problem in found.problems]
  else:
    lines.append("bad files: none")
  if found.fatal is not None:
    lines.append(f"refused: {found.fatal}")
  total = sum(len(s.subjects) * float(np.mean(s.sizes)) for s in found.splits.values() if s.sizes)
  sampled = sum(len(s.sizes) for s in found.splits.values())
  if sampled:
    count = sum(len(s.subjects) for s in found.splits.values())
    lines.append(f"estimated prepared size: {_size(total)} (records of {count} examples; mean serialized size of "
                 f"{sampled} of them)")
  lines.append("result: " + ("the set can be built as configured" if not errors else "cannot be built as configured"))
  return lines, errors


def run(config, out: Callable[[str], None] = print, progress: Callable[[str], None] | None = None) -> None:
  """Checks config.data's manual download, prints the report; raises ValueError when it cannot be built."""
  from pkdot_jax.train import input as input_lib
  input_lib.check_data_config(config)
  if not data_lib.dataset(config.data.name).manual_download:
    manual = ", ".join(n for n in data_lib.available() if data_lib.dataset(n).manual_download)
    raise errors_lib.ConfigError(f"pkdot data check reads a manual download ({manual}); config.data.name is "
                                 f"{config.data.name!r}, which is generated, not downloaded")
  found = scan_download(config, progress)
  lines, errors = report(config, found)
  for line in lines:
    out(line)
  if errors:
    more = f" (and {len(errors) - 1} more problem(s) above)" if len(errors) > 1 else ""
    raise io_lib.BadInputError(errors[0].splitlines()[0] + more)
