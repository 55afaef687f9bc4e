"""Training state: a pytree that the jitted steps take and return whole.

`frozen` holds variables that the step reads but never trains (the frozen teacher's params and batch stats):
they are an *argument* of the jitted step, never a captured constant (XLA constant-folds a closed-over teacher:
54 ms per step on an H200 in our measurement, against 0.7 ms passed as an argument), they are not in the
optimizer and they are left out of the student's checkpoints. `hparams` holds scalar hyperparameters as arrays (the
distillation weight)
so that one compiled program can train several values side by side under `jax.vmap`. The optimizer is not part
of the state: the step that applies it is built for it (so states of equal shapes share programs whatever
optimizer object made them).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from flax import struct

from pkdot_jax import errors


@struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  frozen: Any
  hparams: dict[str, jax.Array]

  @classmethod
  def create(cls, *, params, batch_stats, opt_state, frozen=None, hparams=None) -> "TrainState":
    """`opt_state`: `tx.init(params)` (jitted by the caller: run eagerly it dispatches one program per leaf)."""
    return cls(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats if batch_stats else {},
               opt_state=opt_state, frozen=frozen if frozen is not None else {},
               hparams={k: jnp.asarray(v, jnp.float32) for k, v in (hparams or {}).items()})

  def apply_gradients(self, tx: optax.GradientTransformation, grads, batch_stats) -> "TrainState":
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    return self.replace(  # type: ignore[attr-defined]  # flax.struct adds it
        step=self.step + 1, params=optax.apply_updates(self.params, updates),
        opt_state=opt_state, batch_stats=batch_stats)

  def checkpoint_tree(self) -> dict[str, Any]:
    """What a checkpoint stores (resume point): everything but the frozen teacher, which has its own."""
    return {"step": self.step, "params": self.params, "batch_stats": self.batch_stats,
            "opt_state": self.opt_state, "hparams": self.hparams}

  def restored(self, tree: dict[str, Any]) -> "TrainState":
    """This state with the fields of a `checkpoint_tree()` replaced."""
    return self.replace(**tree)  # type: ignore[attr-defined]  # flax.struct adds it

  def variables(self) -> dict[str, Any]:
    """The model's variables {"params", "batch_stats"} (batch_stats only when the model has some)."""
    variables = {"params": self.params}
    if self.batch_stats:
      variables["batch_stats"] = self.batch_stats
    return variables


def learning_rate(config) -> Any:
  """`config.optimizer`'s learning rate: a float, or an optax schedule of the step (cosine with warmup). The
  trainer also evaluates it on the host to log the rate of every step."""
  opt = config.optimizer
  if opt.get("schedule", "constant") == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, opt.get("warmup_steps", 0),
                                              max(opt.total_steps, opt.get("warmup_steps", 0) + 1))
  return opt.learning_rate


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam(W) or SGD with momentum, an optional cosine schedule and gradient clipping, from `config.optimizer`.

  Sub-trees named in `config.optimizer.frozen_modules` (e.g. the student's fitted T-Net) get zero updates:
  they stay as fitted while the rest trains.
  """
  opt = config.optimizer
  lr = learning_rate(config)
  name = opt.get("name", "adam")
  if name == "adam":
    tx = optax.adamw(lr, weight_decay=opt.weight_decay) if opt.get("weight_decay", 0.0) else optax.adam(lr)
  elif name == "sgd":
    tx = optax.chain(optax.add_decayed_weights(opt.get("weight_decay", 0.0)),
                     optax.sgd(lr, momentum=opt.get("momentum", 0.9) or None))
  else:
    raise errors.ConfigError(f"config.optimizer.name must be 'adam' or 'sgd', got {name!r}")
  if opt.get("grad_clip", 0.0):
    tx = optax.chain(optax.clip_by_global_norm(opt.grad_clip), tx)
  frozen_modules = tuple(opt.get("frozen_modules", ()))
  if frozen_modules:
    def labels(params):
      flat = flax.traverse_util.flatten_dict(params)
      return flax.traverse_util.unflatten_dict(
          {k: ("frozen" if k[0] in frozen_modules else "train") for k in flat})
    tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
  return tx
