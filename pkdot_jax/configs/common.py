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


def smoke_models(model: ml_collections.ConfigDict) -> None:
  """The smoke variants' models, smaller than the "tiny" preset: two residual stages of 8 / 16 channels in the
  video and privileged backbones, 16-wide fusion, one 8-unit T-Net layer. Smoke runs test the wiring, not the
  learning, and XLA:CPU's compile time of their train steps grows with the number of layers."""
  for net in (model.video, model.privileged_net):
    net.widths, net.blocks, net.stem_width = (8, 16), (1, 1), 8
  model.fusion.embed_dim = model.fusion.mlp_dim = model.fusion.concat_hidden = 16
  model.fusion.jca_token_dim, model.fusion.jca_hidden = 8, 4
  model.tnet.hidden = (8,)
