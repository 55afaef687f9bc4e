"""Writers of tiny fake Biovid / Aff-Wild2 layouts (the real data is licence-gated and never in CI)."""

import pathlib

import av
import numpy as np
from PIL import Image


def write_mp4(path, num_frames, height=24, width=24, fps=25, audio_seconds=None, audio_rate=16000, seed=0):
  """A tiny H.264 (mpeg4 fallback) mp4 with moving noise; optional sine audio track (AAC)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    audio = None
    if audio_seconds:
      audio = container.add_stream("aac", rate=audio_rate)
      audio.layout = "mono"
    for i in range(num_frames):
      image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
    if audio is not None:
      total = int(audio_seconds * audio_rate)
      t = np.arange(total) / audio_rate
      wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
      for start in range(0, total, 1024):
        chunk = wave[start:start + 1024][None, :]
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = audio_rate
        frame.pts = start
        for packet in audio.encode(frame):
          container.mux(packet)
      for packet in audio.encode():
        container.mux(packet)


def write_jpegs(folder, num_frames, height=24, width=24, pattern="img_{:05d}.jpg", seed=0):
  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  for i in range(1, num_frames + 1):
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / pattern.format(i))


BIO_COLUMNS_A = ("time", "gsr", "ecg", "emg_trapezius")


def write_bio_csv(path, num_samples=600, columns=BIO_COLUMNS_A, seed=0, nan_at=None):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  values = rng.normal(size=(num_samples, len(columns) - 1))
  if nan_at is not None:
    values[nan_at, 0] = np.nan
  lines = ["\t".join(columns)]
  for i, row in enumerate(values):
    lines.append("\t".join([str(i * 1953)] + [f"{v:.6f}" for v in row]))
  path.write_text("\n".join(lines) + "\n")


def write_biovid(root, subjects=("071309_w_21", "072514_m_27", "080309_m_29"), levels=(0, 4), trials=2,
                 layout="video", num_frames=12, bio_samples=600):
  """<root>/PartA with samples.csv, biosignals_filtered/, and video/ (mp4) or frames/ (jpg)."""
  part = pathlib.Path(root) / "PartA"
  names = ("BL1", "PA1", "PA2", "PA3", "PA4")
  rows = ["subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name"]
  sample_id = 0
  for s, subject in enumerate(subjects):
    for level in levels:
      for trial in range(trials):
        sample = f"{subject}-{names[level]}-{trial + 1:03d}"
        rows.append(f"{s}\t{subject}\t{level}\t{names[level]}\t{sample_id}\t{sample}")
        write_bio_csv(part / "biosignals_filtered" / subject / f"{sample}_bio.csv", bio_samples, seed=sample_id)
        if layout == "video":
          write_mp4(part / "video" / subject / f"{sample}.mp4", num_frames, seed=sample_id)
        else:
          write_jpegs(part / "frames" / subject / sample, num_frames, seed=sample_id)
        sample_id += 1
  (part / "samples.csv").write_text("\n".join(rows) + "\n")
  return part


def write_affwild2(root, videos=None, num_frames=20):
  """cropped_aligned jpgs, VA annotations with -5 lines, raw mp4s with audio; vidB_left/_right share vidB."""
  root = pathlib.Path(root)
  videos = videos or {"train": ["vidA", "vidB_left", "vidB_right"], "validation": ["vidC"]}
  ann = root / "annotations" / "VA_Estimation_Challenge"
  for split, names in videos.items():
    folder = ann / ("Train_Set" if split == "train" else "Validation_Set")
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
      write_jpegs(root / "cropped_aligned" / name, num_frames, 16, 16, pattern="{:05d}.jpg", seed=k)
      lines = ["valence,arousal"]
      for f in range(1, num_frames + 1):
        lines.append("-5,-5" if f % 4 == 0 else f"{(f % 7) / 10:.2f},{-(f % 5) / 10:.2f}")
      (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
      base = name.removesuffix("_left").removesuffix("_right")
      if not (root / "videos" / f"{base}.mp4").exists():
        write_mp4(root / "videos" / f"{base}.mp4", num_frames, 16, 16, fps=10, audio_seconds=num_frames / 10)
  return root


def truncate(path, keep=0.5):
  """Cuts a file to `keep` of its bytes (a download or copy that stopped early)."""
  path = pathlib.Path(path)
  data = path.read_bytes()
  path.write_bytes(data[:max(1, int(len(data) * keep))])


def garbage(path, size=600, seed=0):
  """Overwrites a file with random bytes (not any image or video format)."""
  pathlib.Path(path).write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())


def edit_samples_csv(part, sample_name, **fields):
  """Sets fields (by column name) of the samples.csv row of `sample_name`; a None value cuts the row there."""
  path = pathlib.Path(part) / "samples.csv"
  lines = path.read_text().splitlines()
  header = lines[0].split("\t")
  for k, line in enumerate(lines[1:], start=1):
    row = line.split("\t")
    if row[header.index("sample_name")] == sample_name:
      for name, value in fields.items():
        if value is None:
          row = row[:header.index(name)]
        else:
          row[header.index(name)] = str(value)
      lines[k] = "\t".join(row)
  path.write_text("\n".join(lines) + "\n")
