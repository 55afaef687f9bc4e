"""The dataset registry: names, properties, lookups and the errors that name the registered datasets."""

import pytest

from pkdot_jax import data as data_lib
from pkdot_jax.configs import synthetic as synthetic_config
from pkdot_jax.data import registry
from pkdot_jax.train import input as input_lib


@pytest.fixture
def scratch_registry(monkeypatch):
  monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))  # pylint: disable=protected-access


def test_registered_datasets_and_their_properties():
  assert data_lib.available() == ["pkdot_synthetic", "biovid", "affwild2"]
  for name in data_lib.available():
    spec = data_lib.dataset(name)
    builder = spec.builder_class()
    assert builder.name == name  # the tfds builder writes under <data_dir>/<name>/
    assert spec.manual_download == bool(builder.MANUAL_DOWNLOAD_INSTRUCTIONS), name
    assert callable(spec.load().prepare) and callable(spec.load().make_config)
  assert [n for n in data_lib.available() if data_lib.dataset(n).official_split] == ["affwild2"]
  assert data_lib.dataset("affwild2").official_split == "validation"


def test_unknown_dataset_names_the_registered_ones():
  with pytest.raises(ValueError, match=r"unknown dataset 'biovdi'; expected one of pkdot_synthetic, biovid, affwild2"):
    data_lib.dataset("biovdi")
  with pytest.raises(ValueError, match=r"unknown dataset 'biovdi'; expected one of pkdot_synthetic, biovid"):
    data_lib.prepare("biovdi", "/nonexistent", config_name="binary")
  config = synthetic_config.get_config("smoke")
  config.data.name = "biovdi"
  with pytest.raises(ValueError, match=r"config.data.name='biovdi' is not a dataset; datasets are pkdot_synthetic, "
                                       r"biovid, affwild2"):
    input_lib.check_data_config(config)


def test_manual_download_and_official_split_are_checked_from_the_registry(tmp_path):
  config = synthetic_config.get_config("smoke")
  config.data.name = "biovid"
  with pytest.raises(ValueError, match=r"(?s)'biovid' is a manual download: set --config.data.manual_dir.*samples"):
    input_lib.check_data_config(config)
  with pytest.raises(ValueError, match=r"(?s)'affwild2' is a manual download.*Aff-Wild2"):
    data_lib.prepare("affwild2", str(tmp_path), config_name="va_last")
  config.data.manual_dir = str(tmp_path)
  config.data.protocol = "official"
  with pytest.raises(ValueError, match=r"protocol='official' needs a dataset with an official validation split "
                                       r"\(affwild2\); config.data.name is 'biovid'"):
    input_lib.check_data_config(config)


def test_a_dataset_registered_once_is_found_and_prepared_by_name(scratch_registry, tmp_path):
  spec = data_lib.register(data_lib.DatasetSpec("toy_generated", module="pkdot_jax.data.synthetic",
                                                builder="PkdotSynthetic", manual_download=False))
  assert data_lib.dataset("toy_generated") is spec and data_lib.available()[-1] == "toy_generated"
  with pytest.raises(ValueError, match=r"dataset 'toy_generated' is registered twice"):
    data_lib.register(spec)
  sources = data_lib.prepare("toy_generated", str(tmp_path), config_name="binary_tiny", seed=3)
  assert sorted(sources) == ["train"] and len(sources["train"]) == 60
  assert sources["train"].dataset_info.metadata["seed"] == 3  # the generation seed reaches a generated set
  config = synthetic_config.get_config("smoke")
  config.data.name = "toy_generated"
  input_lib.check_data_config(config)  # no manual_dir needed
