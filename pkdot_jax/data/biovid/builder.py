"""`biovid`: BioVid Heat Pain Database, Part A / Part B (manual download), as array_record without TensorFlow.

Accepted layouts under the manual directory (`<manual_dir>/PartA` or `<manual_dir>/PartB`, or the part folder
itself):

  samples.csv                      tab- (or comma-) separated; columns found by name: subject_name, class_id
                                   (0 = BL1 .. 4 = PA4) or class_name, sample_name
  biosignals_filtered/<subject>/<sample>_bio.csv   (or biosignals_raw/, see `biosignals`)
                                   tab-separated; `time` (microseconds) and signal columns gsr, ecg,
                                   emg_trapezius (Part B also emg_corrugator, emg_zygomaticus), 512 Hz
  video/<subject>/<sample>.mp4     face video, 25 fps                        (official layout), or
  frames/<subject>/<sample>/img_00001.jpg ...  pre-extracted face crops      (frames layout)

Sample names look like 071309_w_21-PA4-006 (subject 071309_w_21). When both video and frames exist the frames
are used. Per example: `num_frames` frames sampled uniformly over the clip (TSN-style random segments are a
training transform applied to these), resized to (height, width); the chosen physiological channels as a
`window_length`-sample window at 512 Hz from the start of the recording; labels, subject id and name.

Example fields: video uint8 (T, H, W, 3); physio float32 (window_length, C) in `channels` order; label int64;
pain_level int32 (0 = BL1 .. 4 = PA4); subject, index, video_id int32; subject_name, sample_name text.
One split, "train" (all samples); subject-disjoint folds come from pkdot_jax.data.folds.subject_folds.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from pkdot_jax.data import io as io_lib
from pkdot_jax.data import media, transforms

FS = 512
LEVEL_NAMES = ("BL1", "PA1", "PA2", "PA3", "PA4")
_SAMPLE_RE = re.compile(r"^(?P<subject>.+)-(?P<level>BL1|PA[1-4])-(?P<trial>\d+)$")


@dataclasses.dataclass(kw_only=True)
class BiovidConfig(tfds.core.BuilderConfig):
  """Which part, classes, frame count / size, physio channels and window, and bad-input policy."""
  part: str = "A"
  levels: tuple[int, ...] = (0, 4)
  num_frames: int = 10
  height: int = 128
  width: int = 128
  channels: tuple[str, ...] = ("gsr", "ecg", "emg_trapezius")
  window_length: int = 2816  # 5.5 s at 512 Hz
  biosignals: str = "filtered"
  skip_bad: bool = False

  def __reduce__(self):
    if any(self is c for c in Biovid.BUILDER_CONFIGS):
      return (_class_config, (self.name,))
    return super().__reduce__()


def _class_config(name):
  return {c.name: c for c in Biovid.BUILDER_CONFIGS}[name]


class Biovid(io_lib.ArrayRecordBuilder):
  """BioVid Heat Pain Database (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      BiovidConfig(name="binary", description="Part A, BL1 vs PA4.", levels=(0, 4)),
      BiovidConfig(name="five_class", description="Part A, BL1, PA1..PA4.", levels=(0, 1, 2, 3, 4)),
      BiovidConfig(name="binary_partb", description="Part B, BL1 vs PA4, facial EMG included.", part="B",
                   levels=(0, 4), channels=("gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus")),
      BiovidConfig(name="five_class_partb", description="Part B, five levels.", part="B", levels=(0, 1, 2, 3, 4),
                   channels=("gsr", "ecg", "emg_trapezius", "emg_corrugator", "emg_zygomaticus")),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  BioVid is licence-gated: request it at https://www.nit.ovgu.de/BioVid.html and place the extracted part folder
  so that <manual_dir>/PartA (or PartB for the *_partb configs) contains:
    samples.csv
    biosignals_filtered/<subject>/<sample>_bio.csv   (biosignals_raw/ with config biosignals="raw")
    video/<subject>/<sample>.mp4                      and/or
    frames/<subject>/<sample>/img_00001.jpg ...       (pre-extracted face crops)
  Pass manual_dir to pkdot_jax.data.biovid.prepare(...) (or tfds DownloadConfig(manual_dir=...)).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    config: BiovidConfig = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(shape=(config.num_frames, config.height, config.width, 3),
                                          dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB),
            "physio": tfds.features.Tensor(shape=(config.window_length, len(config.channels)),
                                           dtype=np.float32, encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.ClassLabel(names=[LEVEL_NAMES[k] for k in config.levels]),
            "pain_level": tfds.features.Scalar(dtype=np.int32),
            "subject": tfds.features.Scalar(dtype=np.int32),
            "index": tfds.features.Scalar(dtype=np.int32),
            "video_id": tfds.features.Scalar(dtype=np.int32),
            "subject_name": tfds.features.Text(),
            "sample_name": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,
        homepage="https://www.nit.ovgu.de/BioVid.html",
    )

  def _split_generators(self, dl_manager):
    config: BiovidConfig = self.builder_config
    root = _part_root(epath.Path(dl_manager.manual_dir), config.part)
    bad = io_lib.BadInputLog("biovid", config.skip_bad)
    samples = read_samples_csv(root / "samples.csv", config.levels)
    examples = []
    for subject_name, level, sample_name in samples:
      example = self._load_sample(root, subject_name, level, sample_name, bad)
      if example is not None:
        examples.append(example)
    self.skipped_report = bad.report()
    if not examples:
      raise io_lib.BadInputError(f"biovid: no usable samples under {root} ({self.skipped_report})")
    subject_names = sorted({e["subject_name"] for e in examples})
    subject_ids = {name: i for i, name in enumerate(subject_names)}
    for i, example in enumerate(examples):
      example.update(subject=subject_ids[example["subject_name"]], index=i, video_id=i)
    self.info.metadata.update({
        "physio_fs": FS, "physio_channels": list(config.channels), "subject_names": subject_names,
        "subject": {"train": [e["subject"] for e in examples]}, "skipped": list(bad.skipped),
    })
    return {"train": self._generate_examples(examples)}

  def _generate_examples(self, examples):
    for example in examples:
      yield example["index"], example

  def _load_sample(self, root, subject_name, level, sample_name, bad):
    config: BiovidConfig = self.builder_config
    bio_path = root / f"biosignals_{config.biosignals}" / subject_name / f"{sample_name}_bio.csv"
    physio = read_bio_csv(bio_path, config.channels, config.window_length, bad)
    if physio is None:
      return None
    video = self._load_frames(root, subject_name, sample_name, bad)
    if video is None:
      return None
    return {"video": video, "physio": physio, "label": config.levels.index(level), "pain_level": level,
            "subject_name": subject_name, "sample_name": sample_name}

  def _load_frames(self, root, subject_name, sample_name, bad):
    config: BiovidConfig = self.builder_config
    size = (config.height, config.width)
    frame_dir = root / "frames" / subject_name / sample_name
    video_path = root / "video" / subject_name / f"{sample_name}.mp4"
    if frame_dir.is_dir():
      files = sorted(frame_dir.glob("img_*.jpg"))
      if len(files) < config.num_frames:
        bad.bad(frame_dir, f"clip has {len(files)} frames, fewer than num_frames={config.num_frames}")
        return None
      chosen = transforms.frame_indices(len(files), config.num_frames)
      try:
        return np.stack([media.read_image(files[i], size) for i in chosen])
      except (OSError, ValueError) as error:
        bad.bad(files[0].parent, f"unreadable frame: {error}")
        return None
    if not video_path.exists():
      bad.bad(video_path, f"missing (neither it nor the frames folder {frame_dir} exists)")
      return None
    try:
      count = media.count_video_frames(video_path)
      if count < config.num_frames:
        bad.bad(video_path, f"clip has {count} frames, fewer than num_frames={config.num_frames}")
        return None
      frames, _ = media.read_video_frames(video_path, transforms.frame_indices(count, config.num_frames), size)
      return frames
    except Exception as error:  # PyAV raises its own error hierarchy for corrupt files.
      bad.bad(video_path, f"unreadable video: {error}")
      return None


def _part_root(manual_dir: epath.Path, part: str) -> epath.Path:
  for candidate in (manual_dir / f"Part{part}", manual_dir / f"part{part}", manual_dir):
    if (candidate / "samples.csv").exists():
      return candidate
  raise io_lib.BadInputError(
      f"biovid: no samples.csv in {manual_dir / f'Part{part}'} or {manual_dir}; expected layout:"
      f"{Biovid.MANUAL_DOWNLOAD_INSTRUCTIONS}")


def _sniff_rows(path) -> list[list[str]]:
  text = epath.Path(path).read_text()
  delimiter = "\t" if "\t" in text.splitlines()[0] else ","
  return [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if row]


def read_samples_csv(path, levels: Sequence[int]) -> list[tuple[str, int, str]]:
  """(subject_name, pain level 0..4, sample_name) of every listed sample whose level is in `levels`."""
  path = epath.Path(path)
  try:
    rows = _sniff_rows(path)
  except (OSError, UnicodeDecodeError, IndexError) as error:
    raise io_lib.BadInputError(f"biovid: {path}: cannot read: {error}") from error
  header = [h.strip().lower() for h in rows[0]]
  if "sample_name" not in header:
    raise io_lib.BadInputError(f"biovid: {path}: no 'sample_name' column; header is {rows[0]}")
  col = {name: header.index(name) for name in header}
  out = []
  for row in rows[1:]:
    sample_name = row[col["sample_name"]].strip()
    match = _SAMPLE_RE.match(sample_name)
    if "class_id" in col:
      level = int(row[col["class_id"]])
    elif match:
      level = LEVEL_NAMES.index(match["level"])
    else:
      raise io_lib.BadInputError(f"biovid: {path}: cannot tell the class of sample {sample_name!r}")
    if "subject_name" in col:
      subject_name = row[col["subject_name"]].strip()
    elif match:
      subject_name = match["subject"]
    else:
      raise io_lib.BadInputError(f"biovid: {path}: cannot tell the subject of sample {sample_name!r}")
    if level in levels:
      out.append((subject_name, level, sample_name))
  return out


def read_bio_csv(path, channels: Sequence[str], window_length: int, bad: io_lib.BadInputLog) -> np.ndarray | None:
  """The `channels` columns (found by header name) of a <sample>_bio.csv as float32 (window_length, C)."""
  path = epath.Path(path)
  if not path.exists():
    bad.bad(path, "missing")
    return None
  try:
    rows = _sniff_rows(path)
  except (OSError, UnicodeDecodeError, IndexError) as error:
    bad.bad(path, f"unreadable: {error}")
    return None
  columns = io_lib.require_columns(rows[0], channels, path, bad)
  if columns is None:
    return None
  try:
    values = np.asarray([[float(row[c]) for c in columns] for row in rows[1:]], dtype=np.float64)
  except (ValueError, IndexError) as error:
    bad.bad(path, f"malformed row: {error}")
    return None
  if values.shape[0] < window_length:
    bad.bad(path, f"{values.shape[0]} samples, fewer than window_length={window_length} ({window_length / FS} s)")
    return None
  values = values[:window_length]
  if not io_lib.check_finite(values, path, f"columns {list(channels)}", bad):
    return None
  return values.astype(np.float32)


def make_config(config_name: str = "binary", **overrides) -> BiovidConfig:
  base = {c.name: c for c in Biovid.BUILDER_CONFIGS}
  if config_name not in base:
    raise ValueError(f"config_name must be one of {sorted(base)}, got {config_name!r}")
  if not overrides:
    return base[config_name]
  fields = {f.name for f in dataclasses.fields(BiovidConfig)} - {"name", "description"}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(f"unknown BiovidConfig fields {sorted(unknown)}; valid: {sorted(fields)}")
  overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
  parts = "_".join(f"{k}-{'-'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in sorted(overrides.items()))
  return dataclasses.replace(base[config_name], name=f"{config_name}_{parts}", **overrides)


def prepare(data_dir: str | os.PathLike, manual_dir: str | os.PathLike, config_name: str = "binary", *,
            quiet: bool = True, **overrides):
  """Builds (or reuses) the Biovid set from `manual_dir`; returns {"train": data source}.

  overrides: BiovidConfig fields (num_frames, height, width, channels, window_length, biosignals, skip_bad).
  Skipped bad inputs (skip_bad=True) are logged and listed in info.metadata["skipped"].
  """
  config = make_config(config_name, **overrides)
  if quiet:
    tfds.disable_progress_bar()
  builder = Biovid(data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder.as_data_source()
