"""`affwild2`: Aff-Wild2 valence/arousal (ABAW VA challenge), manual download, array_record without TensorFlow.

Expected under the manual directory (searched recursively for the annotation folder and raw videos):

  cropped_aligned/<video>/<frame:05d>.jpg                       aligned face crops, 1-based frame numbers
  .../VA_Estimation_Challenge/Train_Set/<video>.txt             first line `valence,arousal`, then one line per
  .../VA_Estimation_Challenge/Validation_Set/<video>.txt        frame in [-1, 1]; -5 = frame without a label
  videos/<base>.mp4 | .avi  (any depth under the manual dir)    raw videos, for audio; <base>_left and
                                                                <base>_right share the audio of <base>

Examples are clips of `num_frames` consecutive frames ending at a labelled frame (every `clip_stride`-th labelled
frame). Target "last": valence_arousal (2,) of the last frame; target "every": (T, 2) per frame with a (T,) bool
"va_mask" (False where the frame has no label, whose values are then 0 and must never be used as targets).
Frames whose crop is missing repeat the previous available crop. The audio window (`audio_fs` Hz, mono) covers the
clip's time span [start of first frame, end of last frame] using the raw video's frame rate; it is zero-padded at
the recording edges and has a fixed length round(num_frames / nominal_fps * audio_fs).

Bad inputs (an unreadable or malformed annotation, an annotation with fewer lines than the video has crops, missing
crops or raw video, a crop or raw video that does not decode, a raw video without audio, crops of different sizes
within a clip) raise a BadInputError naming the file
(and line and field where one applies); with skip_bad=True the annotation / video is skipped, or for a bad crop
the clips that need it, and the file is listed in info.metadata["skipped"]. Crops and audio are decoded while
the records are written, so those checks happen then.

A prepared set records its source in info.metadata["source"] and is not reused for another one (see `prepare`).
`scan` (annotations, raw videos, clip descriptors) and `load_clips` (decoding) are shared with `pkdot data check`.

Splits: the official "train" (Train_Set) and "validation" (Validation_Set). Fields: video uint8 (T, H, W, 3),
audio float32 (La,), valence_arousal float32, [va_mask bool (T,)], video_id int32 (per split, sorted video
names), subject int32 (= video_id: Aff-Wild2 has no subject ids), frame int32 (last frame, 1-based), index int32,
video_name text.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from pkdot_jax import errors
from pkdot_jax.data import io as io_lib
from pkdot_jax.data import media

NO_LABEL = -5.0
_SPLITS = {"train": "Train_Set", "validation": "Validation_Set"}


@dataclasses.dataclass(kw_only=True)
class Affwild2Config(tfds.core.BuilderConfig):
  num_frames: int = 8
  height: int = 112
  width: int = 112
  clip_stride: int = 8
  target: str = "last"
  audio_fs: int = 16000
  nominal_fps: float = 30.0
  skip_bad: bool = False

  @property
  def audio_length(self) -> int:
    return int(round(self.num_frames / self.nominal_fps * self.audio_fs))

  def __reduce__(self):
    if any(self is c for c in Affwild2.BUILDER_CONFIGS):
      return (_class_config, (self.name,))
    return super().__reduce__()


def _class_config(name):
  return {c.name: c for c in Affwild2.BUILDER_CONFIGS}[name]


class Affwild2(io_lib.ManualDownloadBuilder):
  """Aff-Wild2 valence/arousal clips with aligned audio (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [
      Affwild2Config(name="va_last", description="Target = valence/arousal of the clip's last frame."),
      Affwild2Config(name="va_every", description="Targets for every frame, with va_mask.", target="every"),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Aff-Wild2 is distributed by the ABAW organisers (https://ibug.doc.ic.ac.uk/resources/aff-wild2/) after
  signing the EULA. Put into <manual_dir>:
    cropped_aligned/<video>/00001.jpg ...
    <anything>/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<video>.txt
    videos/<base>.mp4 or .avi   (raw videos with audio; <base>_left/_right use <base>)
  Pass manual_dir to pkdot_jax.data.affwild2.prepare(...).
  """

  def _info(self) -> tfds.core.DatasetInfo:
    config: Affwild2Config = self.builder_config
    t = config.num_frames
    features = {
        "video": tfds.features.Tensor(shape=(t, config.height, config.width, 3), dtype=np.uint8,
                                      encoding=tfds.features.Encoding.ZLIB),
        "audio": tfds.features.Tensor(shape=(config.audio_length,), dtype=np.float32,
                                      encoding=tfds.features.Encoding.ZLIB),
        "valence_arousal": tfds.features.Tensor(shape=(2,) if config.target == "last" else (t, 2),
                                                dtype=np.float32),
        "video_id": tfds.features.Scalar(dtype=np.int32),
        "subject": tfds.features.Scalar(dtype=np.int32),
        "frame": tfds.features.Scalar(dtype=np.int32),
        "index": tfds.features.Scalar(dtype=np.int32),
        "video_name": tfds.features.Text(),
    }
    if config.target == "every":
      features["va_mask"] = tfds.features.Tensor(shape=(t,), dtype=np.bool_)
    return tfds.core.DatasetInfo(builder=self, description=__doc__,
                                 features=tfds.features.FeaturesDict(features),
                                 metadata=tfds.core.MetadataDict(), disable_shuffling=True,
                                 homepage="https://ibug.doc.ic.ac.uk/resources/aff-wild2/")

  def source_inputs(self, manual_dir):
    """What this builder reads: cropped_aligned/, the VA annotation folder(s) and the raw videos."""
    manual = pathlib.Path(manual_dir)
    annotation_roots, raw_videos = _find_inputs(manual)
    return [manual / "cropped_aligned", *annotation_roots, *raw_videos.values()]

  def _split_generators(self, dl_manager):
    config: Affwild2Config = self.builder_config
    bad = io_lib.BadInputLog("affwild2", config.skip_bad)
    found = scan(dl_manager.manual_dir, config, bad)
    self.record_source(found.manual)
    self.info.metadata.update({"audio_fs": config.audio_fs, "subject": {}, "skipped": list(bad.skipped)})
    return {split: self._generate_examples(split, clips, found.frames_root, bad)
            for split, clips in found.clips.items()}

  def _generate_examples(self, split, clips, frames_root, bad):
    """Yields the decoded clips, numbered as written (record i has index i); the per-split subject list and the
    skipped list in info.metadata are set once the split is written (tfds writes the metadata after all
    splits)."""
    subjects = []
    for example in load_clips(clips, frames_root, self.builder_config, bad):
      example["index"] = len(subjects)
      subjects.append(example["subject"])
      yield example["index"], example
    self.skipped_report = bad.report()
    if not subjects:
      raise io_lib.BadInputError(f"affwild2: no usable clips in split {split!r} ({self.skipped_report})")
    self.info.metadata["subject"][split] = subjects
    self.info.metadata["skipped"] = list(bad.skipped)


class Scan(NamedTuple):
  """What a manual download holds for one config, before any pixel or audio is decoded: the manual dir, the
  cropped_aligned folder and, per split, the clip descriptors (video, last frame, labels, raw video)."""
  manual: pathlib.Path
  frames_root: pathlib.Path
  clips: dict[str, list[dict]]


def scan(manual_dir, config: Affwild2Config, bad: io_lib.BadInputLog) -> Scan:
  """Finds the annotation folder and raw videos, reads every annotation and lists the clips of each split: the
  first half of what the builder and `pkdot data check` share. No annotation folder, a missing split folder or a
  split without a usable clip raise BadInputError; a bad annotation / missing video or crops go to `bad`."""
  if config.target not in ("last", "every"):
    raise ValueError(f"target must be 'last' or 'every', got {config.target!r}")
  manual = pathlib.Path(os.fspath(manual_dir))  # local files; epath has no recursive glob
  annotation_roots, raw_videos = _find_inputs(manual)
  if not annotation_roots:
    raise io_lib.BadInputError(f"affwild2: no VA_Estimation_Challenge folder under {manual}; expected layout:"
                               f"{Affwild2.MANUAL_DOWNLOAD_INSTRUCTIONS}")
  frames_root = manual / "cropped_aligned"
  splits = {}
  for split, folder in _SPLITS.items():
    clips = []
    if not (annotation_roots[0] / folder).is_dir():
      raise io_lib.BadInputError(f"affwild2: no {folder} folder in {annotation_roots[0]} (split {split!r})")
    names = sorted(p.stem for p in (annotation_roots[0] / folder).glob("*.txt"))
    for video_id, name in enumerate(names):
      annotation = annotation_roots[0] / folder / f"{name}.txt"
      labels = read_annotation(annotation, bad)
      if labels is None:
        continue
      base = name.removesuffix("_left").removesuffix("_right")
      if base not in raw_videos:
        bad.bad(manual / "videos" / f"{base}.mp4", f"raw video (audio of {name}) missing")
        continue
      clips.extend(_video_clips(config, name, video_id, labels, annotation, frames_root / name,
                                raw_videos[base], bad))
    if not clips:
      raise io_lib.BadInputError(f"affwild2: no usable clips in split {split!r} ({bad.report()})")
    splits[split] = clips
  return Scan(manual, frames_root, splits)


def _video_clips(config: Affwild2Config, name, video_id, labels, annotation, frame_dir, raw_video, bad):
  """Clip descriptors (no pixels yet) of one video; [] after reporting missing crops or an annotation with fewer
  lines than the video has frames (a crop numbered past its last line)."""
  t = config.num_frames
  available = {int(p.stem) for p in frame_dir.glob("*.jpg") if p.stem.isdigit()} if frame_dir.is_dir() else set()
  if not available:
    bad.bad(frame_dir, "no cropped_aligned frames" + ("" if frame_dir.is_dir() else " (no such folder)"))
    return []
  if max(available) > len(labels):
    bad.bad(annotation, f"{len(labels)} frame lines, but {frame_dir} has a crop of frame {max(available)} "
            "(one line per video frame expected: a truncated or mismatched annotation?)")
    return []
  labelled = np.flatnonzero((labels != NO_LABEL).all(axis=1)) + 1  # 1-based frame numbers
  ends = [f for f in labelled if f in available and f >= t][:: config.clip_stride]
  return [{"video_name": name, "video_id": video_id, "subject": video_id, "frame": int(f),
           "raw_video": os.fspath(raw_video), "labels": labels, "available": available} for f in ends]


def load_clips(clips: list[dict], frames_root: pathlib.Path, config: Affwild2Config, bad: io_lib.BadInputLog):
  """Decodes the scanned clips of one split one at a time, yielding each usable example (without "index"); a
  clip whose crop or raw video does not decode is reported through `bad`. The second half of what the builder
  and the check share."""
  t = config.num_frames
  size = (config.height, config.width)
  track_of, failed = {}, set()  # raw video -> (audio, fps), for the current video only; files that failed
  for clip in clips:
    raw = clip["raw_video"]
    if raw in failed:
      continue
    if raw not in track_of:
      track_of.clear()  # clips are grouped by video: keep one decoded track
      track = bad.decode(raw, "raw video audio track", lambda: (
          media.read_audio(raw, config.audio_fs), media.video_fps(raw, config.nominal_fps)))
      if track is None:
        failed.add(raw)
        continue
      track_of[raw] = track
    audio, fps = track_of[raw]
    video = _clip_frames(t, clip, frames_root / clip["video_name"], size, bad, failed)
    if video is None:
      continue
    last = clip["frame"]
    end_sample = int(round(last / fps * config.audio_fs))
    window = np.zeros(config.audio_length, np.float32)
    start = end_sample - config.audio_length
    lo, hi = max(start, 0), min(end_sample, audio.size)
    if hi > lo:
      window[lo - start:hi - start] = audio[lo:hi]
    labels = clip["labels"][np.arange(last - t + 1, last + 1) - 1]
    example = {"video": video, "audio": window, "video_id": clip["video_id"], "subject": clip["subject"],
               "frame": last, "video_name": clip["video_name"]}
    if config.target == "last":
      example["valence_arousal"] = labels[-1].astype(np.float32)
    else:
      mask = (labels != NO_LABEL).all(axis=1)
      example["valence_arousal"] = np.where(mask[:, None], labels, 0.0).astype(np.float32)
      example["va_mask"] = mask
    yield example


def _clip_frames(t, clip, frame_dir, size, bad, failed):
  """(T, H, W, 3) crops of one clip (a missing crop repeats the previous one), or None if one is bad."""
  frames, decoded, first = [], {}, None
  for number in range(clip["frame"] - t + 1, clip["frame"] + 1):
    # The nearest available crop at or before this frame (stops at the first hit), else the clip's first.
    chosen = next((n for n in range(number, 0, -1) if n in clip["available"]), None)
    chosen = min(clip["available"]) if chosen is None else chosen
    path = frame_dir / f"{chosen:05d}.jpg"
    if path in failed:
      return None
    if chosen not in decoded:
      result = bad.decode(path, "JPEG crop", lambda: media.read_image_and_size(path, size))
      if result is None:
        failed.add(path)
        return None
      decoded[chosen] = result
      if first is None:
        first = (path.name, result[1])
      elif result[1] != first[1]:
        bad.bad(path, f"crop is {result[1][1]}x{result[1][0]} (width x height) but {first[0]} of the same clip "
                f"is {first[1][1]}x{first[1][0]}")
        failed.add(path)
        return None
    frames.append(decoded[chosen][0])
  return np.stack(frames)


def _find_inputs(manual: pathlib.Path) -> tuple[list[pathlib.Path], dict[str, pathlib.Path]]:
  """(VA_Estimation_Challenge folders, raw videos by stem) under `manual`; cropped_aligned/ is not searched."""
  annotation_roots, raw_videos = [], {}
  for folder, dirs, files in os.walk(manual, followlinks=True):
    dirs[:] = sorted(d for d in dirs if d != "cropped_aligned")
    if os.path.basename(folder) == "VA_Estimation_Challenge":
      annotation_roots.append(pathlib.Path(folder))
    for name in sorted(files):
      path = pathlib.Path(folder, name)
      if path.suffix.lower() in (".mp4", ".avi"):
        raw_videos.setdefault(path.stem, path)
  return sorted(annotation_roots), raw_videos


def read_annotation(path, bad: io_lib.BadInputLog) -> np.ndarray | None:
  """(num_frames, 2) float64 valence, arousal per frame (row k = frame k + 1); -5 kept as the no-label mark.

  Problems (unreadable, wrong header, a line without exactly two numbers, NaN/Inf, a value outside [-1, 1] other
  than -5) are reported through `bad` naming the file and line, and give None.
  """
  path = epath.Path(path)
  try:
    lines = path.read_text().splitlines()
  except (OSError, UnicodeDecodeError) as error:
    bad.bad(path, f"unreadable: {error}", cause=error)
    return None
  while lines and not lines[-1].strip():
    lines.pop()
  header = [h.strip().lower() for h in lines[0].split(",")] if lines else []
  if header != ["valence", "arousal"]:
    bad.bad(path, f"first line must be 'valence,arousal', got {lines[0] if lines else '(empty file)'!r}")
    return None
  if len(lines) < 2:
    bad.bad(path, "no annotation lines after the header")
    return None
  values = np.empty((len(lines) - 1, 2), np.float64)
  for row, line in enumerate(lines[1:]):
    fields = line.split(",")
    if len(fields) != 2:
      bad.bad(path, f"line {row + 2}: {len(fields)} field(s) {line!r}, expected 2 (valence,arousal)")
      return None
    for col, (name, field) in enumerate(zip(header, fields)):
      try:
        values[row, col] = float(field)
      except ValueError:
        bad.bad(path, f"line {row + 2}: field {name!r} is {field.strip()!r}, not a number")
        return None
  if not io_lib.check_finite(values, path, "valence/arousal", bad, first_line=2, columns=header):
    return None
  outside = (np.abs(values) > 1.0) & (values != NO_LABEL)
  if outside.any():
    row, col = np.argwhere(outside)[0]
    bad.bad(path, f"line {row + 2}: field {header[col]!r} is {values[row, col]:g}, outside [-1, 1] (and not the "
            f"{NO_LABEL:g} no-label mark)")
    return None
  return values


def make_config(config_name: str = "va_last", **overrides) -> Affwild2Config:
  base = {c.name: c for c in Affwild2.BUILDER_CONFIGS}
  if config_name not in base:
    raise errors.ConfigError(f"config_name must be one of {sorted(base)}, got {config_name!r}")
  if not overrides:
    return base[config_name]
  fields = {f.name for f in dataclasses.fields(Affwild2Config)} - {"name", "description"}
  unknown = set(overrides) - fields
  if unknown:
    raise errors.ConfigError(f"unknown Affwild2Config fields {sorted(unknown)}; valid: {sorted(fields)}")
  suffix = "_".join(f"{k}-{v}" for k, v in sorted(overrides.items()))
  return dataclasses.replace(base[config_name], name=f"{config_name}_{suffix}", **overrides)


def prepare(data_dir: str | os.PathLike, manual_dir: str | os.PathLike, config_name: str = "va_last", *,
            quiet: bool = True, **overrides):
  """Builds (or reuses) Aff-Wild2 from `manual_dir`; returns {"train": source, "validation": source}.

  overrides: Affwild2Config fields. Skipped bad inputs (skip_bad=True) are listed in info.metadata["skipped"].

  Reuse is checked, never silent: when <data_dir>/affwild2/<config>/<version> exists, the source it was built
  from (absolute manual dir, digest of the input files' relative paths and sizes, config options) must equal the
  one asked for, or a StaleDatasetError names both sources, what differs, and the directory to delete to
  rebuild. It refuses rather than rebuilds (a rebuild would delete a prepared set that other runs may still
  read). When the recorded manual dir no longer holds the files (deleted after preparing), it is reused with a
  warning.
  """
  config = make_config(config_name, **overrides)
  if quiet:
    tfds.disable_progress_bar()
  builder = Affwild2(data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder.as_data_source()
