"""`pkdot_synthetic`: the embedded default dataset (tfds builder, array_record, no download, no TensorFlow).

Privileged-information affect data generated in seconds from a seed. See `generator.py` for the generative
process; in short, per subject and sample: a latent pain intensity p in [0, 1) with an ordinal label
(binary: levels 0 vs 4, five_class: levels 0..4) and valence/arousal in (-1, 1); an 8 x 32 x 32 cartoon-face clip
whose expression depends *weakly* on p under subject-specific appearance, expressivity, head motion, talking and
noise; an EMG/ECG-like physio window (1024 x 2 at 512 Hz) and a voice-like audio window (2048 at 8 kHz) that carry
p (and arousal / valence) *strongly*.

One split, "train", holds every example (index i is position i); train / val / test come from
`pkdot_jax.data.folds.subject_folds` on the subject ids, which are also stored in `info.metadata["subject"]`
(so folds need no decoding pass).

Example fields (per example; the loader adds the batch axis):
  video            uint8   (T, H, W, 3)
  physio           float32 (L, 2)     channels ("emg", "ecg_eda"), fs = physio_fs (512 Hz)
  audio            float32 (La,)      fs = audio_fs (8000 Hz)
  label            int64 scalar       class id (ClassLabel)
  intensity        float32 scalar     the latent p
  valence_arousal  float32 (2,)       (valence, arousal)
  subject, index, video_id  int32 scalars (video_id == index)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import tensorflow_datasets as tfds

from pkdot_jax import errors
from pkdot_jax.data import io as io_lib
from pkdot_jax.data.synthetic import generator

_TINY = dict(num_subjects=6, samples_per_subject=10, num_frames=4, height=16, width=16, physio_length=256,
             audio_length=512)


@dataclasses.dataclass(kw_only=True)
class SyntheticConfig(tfds.core.BuilderConfig):
  """A synthetic-dataset config: sizes and difficulty (`spec`) plus the generation seed."""
  spec: generator.SyntheticSpec = dataclasses.field(default_factory=generator.SyntheticSpec)
  seed: int = 0

  def __reduce__(self):
    # tfds rebuilds the builder in grain worker processes from a pickled config and insists that a config named
    # like a class config *is* that object; so the class configs unpickle to themselves, by name.
    if any(self is c for c in PkdotSynthetic.BUILDER_CONFIGS):
      return (_class_config, (self.name,))
    return super().__reduce__()


def _class_config(name: str) -> SyntheticConfig:
  return {c.name: c for c in PkdotSynthetic.BUILDER_CONFIGS}[name]


def _base_configs() -> list[SyntheticConfig]:
  return [
      SyntheticConfig(name="binary", description="Binary (intensity level 0 vs 4), 20 subjects x 30 clips.",
                      spec=generator.SyntheticSpec(num_classes=2)),
      SyntheticConfig(name="five_class", description="Five ordinal levels, 20 subjects x 30 clips.",
                      spec=generator.SyntheticSpec(num_classes=5)),
      SyntheticConfig(name="binary_tiny", description="Tiny binary set for tests: 6 x 10 clips of 4 x 16 x 16.",
                      spec=generator.SyntheticSpec(num_classes=2, **_TINY)),
      SyntheticConfig(name="five_class_tiny", description="Tiny five-level set for tests.",
                      spec=generator.SyntheticSpec(num_classes=5, **_TINY)),
  ]


class PkdotSynthetic(io_lib.ArrayRecordBuilder):
  """Synthetic privileged-information affect dataset (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = _base_configs()

  def _info(self) -> tfds.core.DatasetInfo:
    spec: generator.SyntheticSpec = self.builder_config.spec
    level_names = ["level0", "level4"] if spec.num_classes == 2 else [f"level{k}" for k in range(5)]
    zlib = tfds.features.Encoding.ZLIB
    features = tfds.features.FeaturesDict({
        "video": tfds.features.Tensor(shape=(spec.num_frames, spec.height, spec.width, 3), dtype=np.uint8,
                                      encoding=zlib),
        "physio": tfds.features.Tensor(shape=(spec.physio_length, len(generator.PHYSIO_CHANNELS)),
                                       dtype=np.float32, encoding=zlib),
        "audio": tfds.features.Tensor(shape=(spec.audio_length,), dtype=np.float32, encoding=zlib),
        "label": tfds.features.ClassLabel(names=level_names),
        "intensity": tfds.features.Scalar(dtype=np.float32),
        "valence_arousal": tfds.features.Tensor(shape=(2,), dtype=np.float32),
        "subject": tfds.features.Scalar(dtype=np.int32),
        "index": tfds.features.Scalar(dtype=np.int32),
        "video_id": tfds.features.Scalar(dtype=np.int32),
    })
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=features,
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # keep record i == example index i (teacher caches are keyed by index)
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    config: SyntheticConfig = self.builder_config
    spec = config.spec
    spec.validate()
    self.info.metadata["spec"] = dataclasses.asdict(spec)
    self.info.metadata["seed"] = int(config.seed)
    self.info.metadata["physio_fs"] = spec.physio_fs
    self.info.metadata["audio_fs"] = spec.audio_fs
    self.info.metadata["physio_channels"] = list(generator.PHYSIO_CHANNELS)
    self.info.metadata["subject"] = {
        "train": np.repeat(np.arange(spec.num_subjects), spec.samples_per_subject).tolist()}
    return {"train": self._generate_examples(spec, config.seed)}

  def _generate_examples(self, spec, seed):
    yield from generator.generate(spec, seed)


def make_config(config_name: str = "binary", seed: int = 0, **overrides) -> SyntheticConfig:
  """A config derived from a named base config with a seed and `SyntheticSpec` overrides.

  The name encodes the seed and a digest of the overrides, so distinct settings never share a directory and an
  identical request reuses the prepared files.
  """
  base = {c.name: c for c in PkdotSynthetic.BUILDER_CONFIGS}
  if config_name not in base:
    raise errors.ConfigError(f"config_name must be one of {sorted(base)}, got {config_name!r}")
  fields = {f.name for f in dataclasses.fields(generator.SyntheticSpec)}
  unknown = set(overrides) - fields
  if unknown:
    raise errors.ConfigError(f"unknown SyntheticSpec overrides {sorted(unknown)}; valid: {sorted(fields)}")
  spec = dataclasses.replace(base[config_name].spec, **overrides)
  spec.validate()
  if seed == 0 and not overrides:
    return base[config_name]
  name = f"{config_name}_seed{int(seed)}"
  if overrides:
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:10]
    name += f"_{digest}"
  return SyntheticConfig(name=name, description=f"{config_name} with seed={seed}, overrides={overrides}",
                         spec=spec, seed=int(seed))
