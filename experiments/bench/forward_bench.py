"""Forward-time benchmark of the models on the local device; prints one JSON object per measurement.

  python -m experiments.bench.forward_bench            # R3D-18 at (8, 10, 112, 112, 3) + tiny teacher/student
  python -m experiments.bench.forward_bench --tiny     # tiny variants only

Variables are random NumPy arrays shaped by ``jax.eval_shape(model.init, ...)`` (what is timed is the
jitted eval-mode forward, fp32 unless stated, median of repeated calls after a warm-up call).
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax import models
from pkdot_jax.train import runinfo


def random_variables(model, *args, **kwargs):
  """Random variables of `model` shaped as its init would make them: BatchNorm variances and scales 1, every
  other leaf normal with variance 1 / fan-in (NumPy, seeded: no init program is compiled)."""
  abstract = jax.eval_shape(lambda *a: model.init(jax.random.key(0), *a, **kwargs), *args)
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name == "var":
      return np.ones(leaf.shape, leaf.dtype)
    if name == "scale":
      return np.ones(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) or 1
    return (rng.standard_normal(leaf.shape) * np.sqrt(1.0 / fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _time(fn, *args, reps):
  jax.block_until_ready(fn(*args))  # compile + warm-up
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def main(argv):
  device = jax.devices()[0]
  info = dict(device=str(device.device_kind), cpu=runinfo.cpu_name(), cores=os.cpu_count(), jax=jax.__version__)
  if "--tiny" not in argv:
    for dtype in (jnp.float32, jnp.bfloat16):
      model = models.R3D18(dtype=dtype)
      clip = np.random.default_rng(0).standard_normal((8, 10, 112, 112, 3)).astype(np.float32)
      variables = random_variables(model, clip, train=False)
      fn = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False))
      seconds = _time(fn, variables, clip, reps=3)
      print(json.dumps(dict(what="r3d18_forward_eval", shape=[8, 10, 112, 112, 3], dtype=jnp.dtype(dtype).name,
                            ms=1e3 * seconds, clips_per_s=8 / seconds, **info)), flush=True)
  cfg = models.default_config("tiny")
  for privileged in ("physio", "audio"):
    cfg.privileged = privileged
    batch = models.dummy_batch(cfg, batch_size=8)
    for name, build in (("teacher", models.build_teacher), ("student", models.build_student)):
      model = build(cfg)
      variables = random_variables(model, batch, train=False)
      for train in (False, True):
        fn = jax.jit(lambda v, b, model=model, train=train: model.apply(v, b, train=train, mutable=["batch_stats"]))
        seconds = _time(fn, variables, batch, reps=20)
        print(json.dumps(dict(what=f"tiny_{name}_forward", privileged=privileged, train=train, batch=8,
                              video=list(cfg.input_shapes.video), ms=1e3 * seconds, **info)), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
