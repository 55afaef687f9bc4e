"""BioVid Heat Pain Database builder (manual download)."""

from data_pipelines.biovid.builder import Biovid, BiovidConfig, make_config, prepare, read_bio_csv, read_samples_csv

__all__ = ["Biovid", "BiovidConfig", "make_config", "prepare", "read_bio_csv", "read_samples_csv"]
