"""Fixtures of the data tests: tiny prepared synthetic sets (built once per session)."""

import pytest

from pkdot_jax.data import synthetic


@pytest.fixture(scope="session")
def tiny_binary(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("synthetic")
  return data_dir, synthetic.prepare(data_dir, "binary_tiny", seed=0)["train"]
