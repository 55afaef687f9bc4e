"""Distillation losses: PKDOT on ott-jax, its building blocks, baselines and a registry.

  from pkdot_jax import losses
  loss = losses.pkdot(student_embeddings, teacher_embeddings)          # k=30, eps=0.01, converged
  loss, aux = losses.pkdot(s, t, return_aux=True)                      # aux.converged, aux.n_iters
  fn = losses.get("rkd"); losses.spec("dkd").needs_labels               # by name, for configs

A new loss is one decorated function (``@losses.register(name, inputs=...)``, registry.py); importing its module
from this file registers it.
"""

from pkdot_jax.losses.baselines import cc
from pkdot_jax.losses.baselines import dkd
from pkdot_jax.losses.baselines import feature_mse
from pkdot_jax.losses.baselines import fitnets
from pkdot_jax.losses.baselines import generalized_distillation
from pkdot_jax.losses.baselines import hinton_kd
from pkdot_jax.losses.baselines import mars
from pkdot_jax.losses.baselines import mmd
from pkdot_jax.losses.baselines import nst
from pkdot_jax.losses.baselines import pkt
from pkdot_jax.losses.baselines import privileged_cosine
from pkdot_jax.losses.baselines import rkd
from pkdot_jax.losses.baselines import sp
from pkdot_jax.losses.ot import DEFAULT_MAX_ITERATIONS
from pkdot_jax.losses.ot import DEFAULT_THRESHOLD
from pkdot_jax.losses.ot import SinkhornDiagnostics
from pkdot_jax.losses.ot import sinkhorn_divergence
from pkdot_jax.losses.pkdot import pkdot
from pkdot_jax.losses.registry import TRAINER_INPUTS
from pkdot_jax.losses.registry import LossSpec
from pkdot_jax.losses.registry import available
from pkdot_jax.losses.registry import get
from pkdot_jax.losses.registry import register
from pkdot_jax.losses.registry import spec
from pkdot_jax.losses.registry import trainable
from pkdot_jax.losses.relations import cosine_similarity_matrix
from pkdot_jax.losses.relations import gather_anchors
from pkdot_jax.losses.relations import select_anchors
from pkdot_jax.losses.relations import shift_similarity
