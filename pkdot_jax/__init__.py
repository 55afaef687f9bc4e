"""pkdot-jax: privileged knowledge distillation with optimal transport, in JAX/Flax."""

__version__ = "0.1.0"
