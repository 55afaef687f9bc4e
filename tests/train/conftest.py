"""Shared fixtures of the training tests: the smoke config on a small synthetic set, and one trained teacher +
T-Net that several tests distil from (training them once keeps the suite inside the CI budget)."""

import pytest

from pkdot_jax.train import loop
from train_helpers import smoke_config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def trained_pipeline(data_dir, tmp_path_factory):
  """teacher (2 epochs) -> T-Net (1) -> PKDOT student (1) on the smoke data; returns (config, workdir, results)."""
  workdir = str(tmp_path_factory.mktemp("pipeline"))
  config = smoke_config(data_dir)
  results = loop.run_pipeline(config, workdir)
  return config, workdir, results
