"""BioVid Heat Pain Database builder (manual download)."""

from pkdot_jax.data.biovid.builder import Biovid, BiovidConfig, make_config, prepare, read_bio_csv, read_samples_csv

__all__ = ["Biovid", "BiovidConfig", "make_config", "prepare", "read_bio_csv", "read_samples_csv"]
