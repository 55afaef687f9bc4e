"""The embedded synthetic dataset: `prepare(data_dir, config_name, seed, **overrides)` -> data sources.

Generative process and fields: `pkdot_jax.data.synthetic.builder` / `generator` docstrings.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from pkdot_jax.data import io as io_lib
from pkdot_jax.data.synthetic.builder import PkdotSynthetic, SyntheticConfig, make_config
from pkdot_jax.data.synthetic.generator import PHYSIO_CHANNELS, SyntheticSpec, generate_arrays

__all__ = ["PHYSIO_CHANNELS", "PkdotSynthetic", "SyntheticConfig", "SyntheticSpec", "generate_arrays",
           "make_config", "prepare", "prepare_builder"]


def prepare_builder(data_dir: str | os.PathLike, config_name: str = "binary", seed: int = 0, *,
                    quiet: bool = True, **overrides) -> PkdotSynthetic:
  """Builds the synthetic dataset under `data_dir` (or reuses it when already built) and returns the builder.

  Args:
    data_dir: tfds data directory; files go to <data_dir>/pkdot_synthetic/<config>/<version>/.
    config_name: "binary", "five_class", "binary_tiny" or "five_class_tiny".
    seed: generation seed; the same seed and overrides give byte-identical files.
    quiet: hide tfds progress bars.
    **overrides: `SyntheticSpec` fields, e.g. num_subjects=8, num_frames=4, height=16, width=16.
  """
  config = make_config(config_name, seed, **overrides)
  if quiet:
    tfds.disable_progress_bar()
  builder = PkdotSynthetic(data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  builder.download_and_prepare()
  stored = builder.info.metadata
  expected = {"seed": int(config.seed), "spec": {k: v for k, v in vars(config.spec).items()}}
  if stored.get("seed") != expected["seed"] or dict(stored.get("spec", {})) != expected["spec"]:
    raise io_lib.StaleDatasetError(
        f"{builder.data_dir} holds a pkdot_synthetic set with seed={stored.get('seed')} spec={stored.get('spec')}, "
        f"but seed={expected['seed']} spec={expected['spec']} was asked; delete that directory or use another "
        "data_dir")
  return builder


def prepare(data_dir: str | os.PathLike, config_name: str = "binary", seed: int = 0, *, quiet: bool = True,
            **overrides) -> dict[str, tfds.data_sources.ArrayRecordDataSource]:
  """Builds (or reuses) the synthetic dataset and returns {split: random-access data source}.

  The only split is "train" (all examples, record i has index i); make train / val / test with
  `pkdot_jax.data.folds.subject_folds(pkdot_jax.data.io.example_subjects(sources["train"]), ...)`.
  Arguments as in `prepare_builder`.
  """
  builder = prepare_builder(data_dir, config_name, seed, quiet=quiet, **overrides)
  return builder.as_data_source()
