"""Forward+backward time of the jitted PKDOT loss (k = 30, converged defaults) on the default JAX device.

Prints one JSON object per batch size (device, B, median ms, Sinkhorn iterations of the three solves,
convergence, peak memory where the backend reports it), then a summary line.

  python -m experiments.bench.loss_bench                       # B in 128 512 2048 8192
  python -m experiments.bench.loss_bench --batch_sizes 128 512 --repeats 50

Inputs are ReLU-like embeddings (D = 512) with a student that is a noisy copy of the teacher, the regime of a
student being distilled; they are passed as jit arguments (never closed over: XLA would constant-fold them).

`--compare_ott` instead times, in the same process and on the same PKDOT point clouds, the divergence alone two
ways: ours (`losses.sinkhorn_divergence`: ott for (x, y), the one-pass symmetric fixed point for (x, x) and
(y, y)) and ott's `sinkhorn_divergence` for all three solves with the same settings (what this project used
before), forward + backward, with both values and iteration counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_sinkhorn_divergence

from pkdot_jax import losses
from pkdot_jax.losses import ot
from pkdot_jax.losses.pkdot import point_clouds


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


def _time(fn, *args, repeats: int) -> tuple[float, list[float], object]:
  """(seconds of the first call, which compiles; ms of each of `repeats` further calls; last output)."""
  start = time.perf_counter()
  out = fn(*args)
  jax.block_until_ready(out)
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) * 1e3)
  return compile_s, times, out


def _ott_divergence(x: jax.Array, y: jax.Array, epsilon: float) -> tuple[jax.Array, jax.Array]:
  """All three solves by ott (its symmetric solves: parallel updates, momentum 0.5), our other settings."""
  # pylint: disable-next=protected-access
  kwargs = ot._solver_kwargs(ot.DEFAULT_THRESHOLD, ot.DEFAULT_MAX_ITERATIONS, implicit_diff=True)
  with jax.default_matmul_precision("highest"):
    value, out = ott_sinkhorn_divergence.sinkhorn_divergence(
        pointcloud.PointCloud, x, y, epsilon=2.0 * epsilon, solve_kwargs=kwargs)
  return 0.5 * value, jnp.stack([jnp.asarray(n, jnp.int32) for n in out.n_iters])


def compare_ott(batch: int, *, k: int, dim: int, repeats: int, seed: int, epsilon: float = 0.01) -> dict:
  x, y = point_clouds(*_embeddings(batch, dim, seed), k=k, anchors="least_similar", shift="min")

  def ours(x, y):
    value, aux = ot.sinkhorn_divergence(x, y, epsilon=epsilon, return_aux=True)
    return value, aux.n_iters

  device = jax.devices()[0]
  result = {"device": f"{device.platform}:{device.device_kind}", "B": batch, "k": k}
  for name, fn in (("ours", ours), ("ott", lambda x, y: _ott_divergence(x, y, epsilon))):
    step = jax.jit(jax.value_and_grad(fn, has_aux=True))
    _, times, ((value, n_iters), grad) = _time(step, x, y, repeats=repeats)
    result[name] = {"ms_median": round(statistics.median(times), 3), "value": float(value),
                    "n_iters": [int(n) for n in n_iters], "grad_norm": float(jnp.linalg.norm(grad))}
  result["speedup"] = round(result["ott"]["ms_median"] / result["ours"]["ms_median"], 2)
  result["value_rel_diff"] = abs(result["ours"]["value"] - result["ott"]["value"]) / abs(result["ott"]["value"])
  return result


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
  compile_s, times, ((value, aux), grad) = _time(step, student, teacher, repeats=repeats)
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
  parser.add_argument("--compare_ott", action="store_true",
                      help="time the divergence alone instead: ours vs ott's three solves (same clouds)")
  args = parser.parse_args(argv)
  if args.compare_ott:
    for batch in args.batch_sizes:
      print(json.dumps({"compare_ott": compare_ott(batch, k=args.k, dim=args.dim, repeats=args.repeats,
                                                   seed=args.seed), "jax": jax.__version__}), flush=True)
    return
  results = []
  for batch in args.batch_sizes:
    result = bench(batch, k=args.k, dim=args.dim, repeats=args.repeats, seed=args.seed)
    print(json.dumps(result), flush=True)
    results.append(result)
  print(json.dumps({"summary": {r["B"]: r["ms_median"] for r in results}, "jax": jax.__version__}))


if __name__ == "__main__":
  main()
