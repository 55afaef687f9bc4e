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

Splits: the official "train" (Train_Set) and "validation" (Validation_Set). Fields: video uint8 (T, H, W, 3),
audio float32 (La,), valence_arousal float32, [va_mask bool (T,)], video_id int32 (per split, sorted video
names), subject int32 (= video_id: Aff-Wild2 has no subject ids), frame int32 (last frame, 1-based), index int32,
video_name text.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

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


class Affwild2(io_lib.ArrayRecordBuilder):
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

  def _split_generators(self, dl_manager):
    config: Affwild2Config = self.builder_config
    if config.target not in ("last", "every"):
      raise ValueError(f"target must be 'last' or 'every', got {config.target!r}")
    manual = pathlib.Path(os.fspath(dl_manager.manual_dir))  # local files; epath has no recursive glob
    annotation_roots = sorted(manual.glob("**/VA_Estimation_Challenge"))
    if not annotation_roots:
      raise io_lib.BadInputError(f"affwild2: no VA_Estimation_Challenge folder under {manual}; expected layout:"
                                 f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    frames_root = manual / "cropped_aligned"
    raw_videos = {p.stem: p for p in manual.glob("**/*") if p.suffix.lower() in (".mp4", ".avi")
                  and "cropped_aligned" not in str(p)}
    bad = io_lib.BadInputLog("affwild2", config.skip_bad)
    splits, subjects = {}, {}
    for split, folder in _SPLITS.items():
      clips = []
      names = sorted(p.stem for p in (annotation_roots[0] / folder).glob("*.txt"))
      for video_id, name in enumerate(names):
        labels = read_annotation(annotation_roots[0] / folder / f"{name}.txt", bad)
        if labels is None:
          continue
        base = name.removesuffix("_left").removesuffix("_right")
        if base not in raw_videos:
          bad.bad(manual / "videos" / f"{base}.mp4", f"raw video (audio of {name}) missing")
          continue
        clips.extend(self._video_clips(name, video_id, labels, frames_root / name, raw_videos[base], bad))
      if not clips:
        raise io_lib.BadInputError(f"affwild2: no usable clips in split {split!r} ({bad.report()})")
      for i, clip in enumerate(clips):
        clip["index"] = i
      splits[split] = clips
      subjects[split] = [c["video_id"] for c in clips]
    self.skipped_report = bad.report()
    self.info.metadata.update({"audio_fs": config.audio_fs, "subject": subjects, "skipped": list(bad.skipped)})
    return {split: self._generate_examples(clips, frames_root, raw_videos) for split, clips in splits.items()}

  def _video_clips(self, name, video_id, labels, frame_dir, raw_video, bad):
    """Clip descriptors (no pixels yet) of one video."""
    config: Affwild2Config = self.builder_config
    t = config.num_frames
    available = {int(p.stem) for p in frame_dir.glob("*.jpg") if p.stem.isdigit()} if frame_dir.is_dir() else set()
    if not available:
      bad.bad(frame_dir, "no cropped_aligned frames")
      return []
    labelled = np.flatnonzero((labels != NO_LABEL).all(axis=1)) + 1  # 1-based frame numbers
    ends = [f for f in labelled if f in available and f >= t][:: config.clip_stride]
    return [{"video_name": name, "video_id": video_id, "subject": video_id, "frame": int(f),
             "raw_video": os.fspath(raw_video), "labels": labels, "available": available} for f in ends]

  def _generate_examples(self, clips, frames_root, raw_videos):
    config: Affwild2Config = self.builder_config
    t = config.num_frames
    audio_cache: dict[str, tuple[np.ndarray, float]] = {}
    for clip in clips:
      raw = clip["raw_video"]
      if raw not in audio_cache:
        audio_cache.clear()  # clips are grouped by video: keep one decoded track
        with media.av.open(raw) as container:
          stream = container.streams.video[0]
          fps = float(stream.average_rate or config.nominal_fps)
        audio_cache[raw] = (media.read_audio(raw, config.audio_fs), fps)
      audio, fps = audio_cache[raw]
      last = clip["frame"]
      numbers = np.arange(last - t + 1, last + 1)
      frames, previous = [], None
      for number in numbers:
        candidates = [n for n in range(number, 0, -1) if n in clip["available"]]
        chosen = candidates[0] if candidates else min(clip["available"])
        if chosen != previous:
          image = media.read_image(frames_root / clip["video_name"] / f"{chosen:05d}.jpg",
                                   (config.height, config.width))
          previous = chosen
        frames.append(image)
      end_sample = int(round(last / fps * config.audio_fs))
      window = np.zeros(config.audio_length, np.float32)
      start = end_sample - config.audio_length
      lo, hi = max(start, 0), min(end_sample, audio.size)
      if hi > lo:
        window[lo - start:hi - start] = audio[lo:hi]
      labels = clip["labels"][numbers - 1]
      example = {"video": np.stack(frames), "audio": window, "video_id": clip["video_id"],
                 "subject": clip["subject"], "frame": last, "index": clip["index"],
                 "video_name": clip["video_name"]}
      if config.target == "last":
        example["valence_arousal"] = labels[-1].astype(np.float32)
      else:
        mask = (labels != NO_LABEL).all(axis=1)
        example["valence_arousal"] = np.where(mask[:, None], labels, 0.0).astype(np.float32)
        example["va_mask"] = mask
      yield clip["index"], example


def read_annotation(path, bad: io_lib.BadInputLog) -> np.ndarray | None:
  """(num_frames, 2) float64 valence, arousal per frame (row k = frame k + 1); -5 kept as the no-label mark."""
  path = epath.Path(path)
  try:
    lines = path.read_text().strip().splitlines()
  except (OSError, UnicodeDecodeError) as error:
    bad.bad(path, f"unreadable: {error}")
    return None
  header = [h.strip().lower() for h in lines[0].split(",")] if lines else []
  if header != ["valence", "arousal"]:
    bad.bad(path, f"first line must be 'valence,arousal', got {lines[0] if lines else '(empty file)'!r}")
    return None
  try:
    values = np.asarray([[float(v) for v in line.split(",")] for line in lines[1:]], dtype=np.float64)
  except ValueError as error:
    bad.bad(path, f"malformed line: {error}")
    return None
  if values.ndim != 2 or values.shape[1] != 2:
    bad.bad(path, f"expected 2 values per line, got shape {values.shape}")
    return None
  if not io_lib.check_finite(values, path, "valence/arousal", bad):
    return None
  labelled = (values != NO_LABEL).all(axis=1)
  if np.abs(values[labelled]).max(initial=0.0) > 1.0:
    bad.bad(path, "valence/arousal outside [-1, 1] (other than the -5 no-label mark)")
    return None
  return values


def make_config(config_name: str = "va_last", **overrides) -> Affwild2Config:
  base = {c.name: c for c in Affwild2.BUILDER_CONFIGS}
  if config_name not in base:
    raise ValueError(f"config_name must be one of {sorted(base)}, got {config_name!r}")
  if not overrides:
    return base[config_name]
  fields = {f.name for f in dataclasses.fields(Affwild2Config)} - {"name", "description"}
  unknown = set(overrides) - fields
  if unknown:
    raise ValueError(f"unknown Affwild2Config fields {sorted(unknown)}; valid: {sorted(fields)}")
  suffix = "_".join(f"{k}-{v}" for k, v in sorted(overrides.items()))
  return dataclasses.replace(base[config_name], name=f"{config_name}_{suffix}", **overrides)


def prepare(data_dir: str | os.PathLike, manual_dir: str | os.PathLike, config_name: str = "va_last", *,
            quiet: bool = True, **overrides):
  """Builds (or reuses) Aff-Wild2 from `manual_dir`; returns {"train": source, "validation": source}."""
  config = make_config(config_name, **overrides)
  if quiet:
    tfds.disable_progress_bar()
  builder = Affwild2(data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder.as_data_source()
