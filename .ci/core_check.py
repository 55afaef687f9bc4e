"""The core install (`pip install .`, no extras) runs the loss library: import, jit and grad of PKDOT and of one
baseline, with no trainer package imported. Run by .ci/run in a fresh virtual environment."""

import sys

import jax
import jax.numpy as jnp

from pkdot_jax import losses

TRAIN_ONLY = ("flax", "orbax", "tensorflow_datasets", "grain", "ml_collections", "matplotlib", "tensorboardX")

student = jax.random.normal(jax.random.key(0), (16, 8))
teacher = jax.random.normal(jax.random.key(1), (16, 8))
pkdot = jax.jit(losses.pkdot, static_argnames=("k",))
value = pkdot(student, teacher, k=4)
grad = jax.grad(lambda s: pkdot(s, teacher, k=4))(student)
baseline = jax.jit(jax.value_and_grad(lambda s: losses.rkd(s, teacher)))
rkd_value, rkd_grad = baseline(student)
checks = {"pkdot finite and positive": bool(jnp.isfinite(value) & (value > 0)),
          "pkdot gradient finite and non-zero": bool(jnp.all(jnp.isfinite(grad)) & jnp.any(grad != 0)),
          "rkd finite with a finite gradient": bool(jnp.isfinite(rkd_value) & jnp.all(jnp.isfinite(rkd_grad))),
          "no trainer package imported": not [m for m in TRAIN_ONLY if sys.modules.get(m) is not None]}
failed = [name for name, ok in checks.items() if not ok]
print(f"core install: pkdot={float(value):.6f} rkd={float(rkd_value):.6f}; "
      + ("all checks passed" if not failed else "FAILED: " + ", ".join(failed)))
sys.exit(1 if failed else 0)
