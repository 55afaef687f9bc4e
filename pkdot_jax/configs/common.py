"""Fields every experiment config shares; each experiment's `get_config()` starts from `base_config()`.

The fields, their defaults, constraints and roles are declared once, in `pkdot_jax/train/schema.py`.
"""

from __future__ import annotations

import ml_collections

from pkdot_jax import models
from pkdot_jax.train import schema, stages


def base_config(model_size: str = "tiny") -> ml_collections.ConfigDict:
  """Every field at its default (declared, with its constraint and role, in train/schema.py) and the model
  preset `model_size`."""
  config = schema.defaults(stages.STAGE_ORDER)
  config.model = models.default_config(model_size)
  return config
