"""Several seeds in one compiled program (vmap, or lax.map) against the same seeds trained one after another.

  python -m experiments.bench.vmap_bench [--members 1 2 4] [--batch 32] [--steps 10]

Times the trainer's own PKDOT student step (tiny models, teacher forward inside) for M members: one vmapped
program over M stacked states and batches, one lax.map program (members in sequence inside it; what
`parallel.over_members` uses on CPUs), and M separate calls of the single-member program per step. Prints one JSON
line per M with ms per step of all members, the speedups over sequential calls, and compile seconds.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import optax

from pkdot_jax import models
from pkdot_jax.train import steps
from pkdot_jax.train.state import TrainState


TX = optax.adam(1e-3)


def _member(cfg, teacher, student, batch, seed):
  t_vars = models.init_variables(teacher, batch, seed=100 + seed)
  s_vars = models.init_variables(student, {"video": batch["video"]}, seed=seed)
  return TrainState.create(params=s_vars["params"], batch_stats=s_vars["batch_stats"],
                           opt_state=TX.init(s_vars["params"]),
                           frozen={"teacher": t_vars}, hparams={"distill_weight": 0.6})


def _time(fn, state, batch, keys, steps_count):
  t0 = time.perf_counter()
  state, metrics = fn(state, batch, keys)  # compile + first step
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(steps_count):
    state, metrics = fn(state, batch, keys)
  jax.block_until_ready(metrics)
  return (time.perf_counter() - t0) / steps_count * 1e3, compile_s


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--members", type=int, nargs="+", default=[1, 2, 4])
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args()

  cfg = models.default_config("tiny")
  batch = models.dummy_batch(cfg, args.batch)
  batch["label"] = (jnp.arange(args.batch) % 2).astype(jnp.int32)
  teacher, student = models.build_teacher(cfg), models.build_student(cfg)
  loss_fn = steps.student_loss(student, teacher, "classification",
                               {"method": "pkdot", "kwargs": {"k": 8, "epsilon": 0.01}})
  single = jax.jit(steps.make_train_step(loss_fn, TX))
  batched = jax.jit(jax.vmap(steps.make_train_step(loss_fn, TX)))
  step_fn = steps.make_train_step(loss_fn, TX)
  mapped = jax.jit(lambda state, batch, keys: jax.lax.map(lambda a: step_fn(*a), (state, batch, keys)))
  device = jax.devices()[0]
  for m in args.members:
    states = [_member(cfg, teacher, student, batch, seed) for seed in range(m)]
    keys = [jax.random.key_data(jax.random.key(seed)) for seed in range(m)]

    def sequential(states, batch, keys):
      out = [single(s, batch, k) for s, k in zip(states, keys)]
      return [o[0] for o in out], [o[1] for o in out]

    seq_ms, seq_compile = _time(sequential, states, batch, keys, args.steps)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    stacked_batch = jax.tree.map(lambda x: jnp.stack([x] * m), batch)
    vmap_ms, vmap_compile = _time(batched, stacked, stacked_batch, jnp.stack(keys), args.steps)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
    map_ms, map_compile = _time(mapped, stacked, stacked_batch, jnp.stack(keys), args.steps)
    print(json.dumps({"bench": "vmap_members", "device": device.device_kind, "platform": device.platform,
                      "members": m, "batch": args.batch, "sequential_ms_per_step": round(seq_ms, 2),
                      "vmapped_ms_per_step": round(vmap_ms, 2), "vmap_speedup": round(seq_ms / vmap_ms, 3),
                      "lax_map_ms_per_step": round(map_ms, 2), "lax_map_speedup": round(seq_ms / map_ms, 3),
                      "sequential_compile_s": round(seq_compile, 2), "vmapped_compile_s": round(vmap_compile, 2),
                      "lax_map_compile_s": round(map_compile, 2),
                      "note": "compile_s includes the first step; sequential compiles once for all members"}),
          flush=True)


if __name__ == "__main__":
  main()
