"""BioVid Heat Pain Database builder (manual download)."""

from pkdot_jax.data.biovid.builder import (Biovid, BiovidConfig, Scan, load_samples, make_config, prepare,
                                           read_bio_csv, read_samples_csv, scan)

__all__ = ["Biovid", "BiovidConfig", "Scan", "load_samples", "make_config", "prepare", "read_bio_csv",
           "read_samples_csv", "scan"]
