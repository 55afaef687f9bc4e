"""Forward+backward time of the jitted PKDOT loss (k = 30, converged defaults) on the default JAX device.

Prints one JSON object per batch size (device, B, median ms, Sinkhorn iterations of the three solves,
convergence, peak memory where the backend reports it), then a summary line.

  python -m experiments.bench.loss_bench                       # B in 128 512 2048 8192
  python -m experiments.bench.loss_bench --batch_sizes 128 512 --repeats 50

Inputs are ReLU-like embeddings (D = 512) with a student that is a noisy copy of the teacher, the regime of a
student being distilled; they are passed as jit arguments (never closed over: XLA would constant-fold them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax import losses


def _embeddings(batch: int, dim: int, seed: int) -> tuple[jax.Array, jax.Array]:
  rng = np.random.default_rng(seed)
  teacher = np.maximum(rng.normal(size=(batch, dim)), 0.0)
  student = np.maximum(teacher + 0.5 * rng.normal(size=(batch, dim)), 0.0)
  return jnp.asarray(student, jnp.float32), jnp.asarray(teacher, jnp.float32)


def _peak_bytes(device: jax.Device) -> int | None:
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # CPU backends may raise or return None
    return None
  if not stats:
    return None
  return stats.get("peak_bytes_in_use")


def bench(batch: int, *, k: int, dim: int, repeats: int, seed: int, solver_options=None) -> dict:
  student, teacher = _embeddings(batch, dim, seed)

  def loss(s, t):
    return losses.pkdot(s, t, k=k, return_aux=True, solver_options=solver_options)

  step = jax.jit(jax.value_and_grad(loss, has_aux=True))
  # XLA's static buffer plan of the compiled step: available on every backend (CPU has no runtime peak stats).
  try:
    memory = step.lower(student, teacher).compile().memory_analysis()
    temp_bytes = int(memory.temp_size_in_bytes)
  except Exception:  # pylint: disable=broad-except
    temp_bytes = None
  compile_start = time.perf_counter()
  (value, aux), grad = step(student, teacher)
  jax.block_until_ready(grad)
  compile_s = time.perf_counter() - compile_start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    (value, aux), grad = step(student, teacher)
    jax.block_until_ready((value, grad))
    times.append((time.perf_counter() - start) * 1e3)
  device = jax.devices()[0]
  return {
      "device": f"{device.platform}:{device.device_kind}",
      "B": batch,
      "k": k,
      "D": dim,
      "ms_median": round(statistics.median(times), 3),
      "ms_min": round(min(times), 3),
      "repeats": repeats,
      "compile_s": round(compile_s, 2),
      "value": float(value),
      "n_iters": [int(n) for n in aux.n_iters],
      "converged": bool(aux.converged),
      "grad_finite": bool(jnp.all(jnp.isfinite(grad))),
      "peak_bytes": _peak_bytes(device),
      "xla_temp_bytes": temp_bytes,
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch_sizes", type=int, nargs="+", default=[128, 512, 2048, 8192])
  parser.add_argument("--k", type=int, default=30)
  parser.add_argument("--dim", type=int, default=512)
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  results = []
  for batch in args.batch_sizes:
    result = bench(batch, k=args.k, dim=args.dim, repeats=args.repeats, seed=args.seed)
    print(json.dumps(result), flush=True)
    results.append(result)
  print(json.dumps({"summary": {r["B"]: r["ms_median"] for r in results}, "jax": jax.__version__}))


if __name__ == "__main__":
  main()
