"""Aff-Wild2 valence/arousal builder (manual download)."""

from pkdot_jax.data.affwild2.builder import (Affwild2, Affwild2Config, Scan, load_clips, make_config, prepare,
                                             read_annotation, scan)

__all__ = ["Affwild2", "Affwild2Config", "Scan", "load_clips", "make_config", "prepare", "read_annotation", "scan"]
