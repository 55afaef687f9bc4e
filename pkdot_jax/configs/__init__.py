"""Experiment configs: one `get_config(variant)` module per experiment, addressable by name or by path.

  synthetic[:variant]       the embedded synthetic dataset (variants: smoke, demo, demo_quick)
  biovid_binary[:variant]   Biovid BL1 vs PA4 (paper setup; variants: authors, smoke)
  biovid_5class[:variant]   Biovid five pain levels
  affwild2_va[:variant]     Aff-Wild2 valence/arousal

`resolve("synthetic:demo")` gives the file of a built-in config; a path (`my_configs/exp.py:variant`) is used as
it is, so a user's own config file works the same way. `common.base_config()` holds the fields every config
shares.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

from pkdot_jax import errors

BUILTIN = ("synthetic", "biovid_binary", "biovid_5class", "affwild2_va")
_HERE = os.path.dirname(os.path.abspath(__file__))


def resolve(spec: str) -> str:
  """`NAME[:variant]` or `path/to/file.py[:variant]` -> `/absolute/path/to/file.py[:variant]`."""
  path, sep, variant = spec.partition(":")
  if path in BUILTIN:
    path = os.path.join(_HERE, path + ".py")
  elif not os.path.isfile(path):
    raise errors.MissingError(f"config {spec!r}: no file {path!r} and not a built-in config name "
                            f"({', '.join(BUILTIN)})")
  return os.path.abspath(path) + sep + variant


def load_module(path: str, name: str):
  """Imports a Python file as a module (config and sweep files)."""
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise errors.MissingError(f"cannot load {path}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load(spec: str) -> ml_collections.ConfigDict:
  """`NAME[:variant]` or `path.py[:variant]` -> get_config(variant)."""
  path, _, variant = resolve(spec).partition(":")
  module = load_module(path, "pkdot_experiment_config")
  return module.get_config(variant) if variant else module.get_config()
