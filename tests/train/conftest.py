"""Shared fixtures of the training tests: the smoke config on a small synthetic set, one `Context` (compiled
programs) for the tests that train the smoke teacher, and one trained teacher + T-Net that several tests distil
from (training them once keeps the suite inside the CI budget)."""

import pytest

from pkdot_jax.train import loop
from pkdot_jax.train.programs import Context
from train_helpers import smoke_config


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def smoke_context():
  """The programs of the smoke stages, traced and compiled once per test process (as a sweep shares them between
  its runs): the tests that train the smoke teacher again (resume, preemption, damaged records) reuse them."""
  return Context()


@pytest.fixture(scope="session")
def trained_pipeline(data_dir, tmp_path_factory, smoke_context):
  """teacher (2 epochs) -> T-Net (1) -> PKDOT student (1) on the smoke data; returns (config, workdir, results)."""
  workdir = str(tmp_path_factory.mktemp("pipeline"))
  config = smoke_config(data_dir)
  results = loop.run_pipeline(config, workdir, context=smoke_context)
  return config, workdir, results
