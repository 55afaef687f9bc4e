"""The embedded synthetic dataset: `prepare(data_dir, config_name, seed, **overrides)` -> data sources.

Generative process and fields: `pkdot_jax.data.synthetic.builder` / `generator` docstrings.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os

import tensorflow_datasets as tfds

from pkdot_jax.data import io as io_lib
from pkdot_jax.data.synthetic.builder import PkdotSynthetic, SyntheticConfig, make_config
from pkdot_jax.data.synthetic.generator import PHYSIO_CHANNELS, SyntheticSpec, generate_arrays

__all__ = ["PHYSIO_CHANNELS", "PkdotSynthetic", "SyntheticConfig", "SyntheticSpec", "generate_arrays",
           "make_config", "prepare", "prepare_builder"]


class _QuietTfds(logging.Filter):
  """Drops tfds's "Using custom data configuration" warning: every generated set is a custom config."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "Using custom data configuration" not in record.getMessage()


_QUIET_FILTER = _QuietTfds()


def prepare_builder(data_dir: str | os.PathLike, config_name: str = "binary", seed: int = 0, *,
                    quiet: bool = True, **overrides) -> PkdotSynthetic:
  """Builds the synthetic dataset under `data_dir` (or reuses it when already built) and returns the builder.

  Args:
    data_dir: tfds data directory; files go to <data_dir>/pkdot_synthetic/<config>/<version>/.
    config_name: "binary", "five_class", "binary_tiny" or "five_class_tiny".
    seed: generation seed; the same seed and overrides give byte-identical files.
    quiet: hide tfds progress bars, its "Downloading and preparing dataset Unknown size" lines and its
      custom-config warning (the set is generated, nothing is downloaded).
    **overrides: `SyntheticSpec` fields, e.g. num_subjects=8, num_frames=4, height=16, width=16.
  """
  config = make_config(config_name, seed, **overrides)
  quiet_context = contextlib.nullcontext()
  if quiet:
    tfds.disable_progress_bar()
    absl_logger = logging.getLogger("absl")
    if _QUIET_FILTER not in absl_logger.filters:
      absl_logger.addFilter(_QUIET_FILTER)
    # tfds prints "Downloading and preparing dataset Unknown size ..." and "... prepared to" to stdout
    # (termcolor): nothing is downloaded here, the set is generated.
    quiet_context = contextlib.redirect_stdout(io.StringIO())
  builder = PkdotSynthetic(data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  with quiet_context:
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
