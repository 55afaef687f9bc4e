"""Student train-step benchmark of the paper setup: the trainer's own jitted step, timed on one device.

Builds the PKDOT student stage from the library (models.default_config, steps.student_loss,
steps.make_train_step, steps.jit_step on a one-device data mesh, TrainState with the frozen teacher in
`state.frozen`, Adam via make_optimizer with the T-Net frozen) and times, per compute dtype:

  teacher   the frozen teacher's forward inside every step (what the PyTorch anchor does), PKDOT term;
  cached    the teacher's outputs as batch fields "teacher_embedding"/"teacher_prediction" (the trainer's
            teacher cache), PKDOT term;
  none      distillation method "none": the same step without the OT term and without the teacher, so
            (cached - none) / none is the OT overhead;
  trap_vars, trap_emb (opt-in, --trap): the teacher *variables*, resp. the cached teacher *outputs*, closed
            over as constants instead of passed as arguments: the constant-folding trap (docs/benchmarks.md).

Every step's metrics are kept (Sinkhorn iterations "ot_iterations" = max over the three solves,
"ot_converged"), from the first step of a fresh state on, so early training is included. The state is
donated, data stay on the device, every timed step ends with block_until_ready; a second, pipelined loop
(no sync between steps, what the training loop does) gives ms_pipelined.

Prints one JSON object per line: {"what": "env" | "matmul_peak" | "flops" | "step" | "summary" | "hlo", ...}.

  python -m experiments.bench.step_bench                                   # paper setup, B=128, fp32+bf16
  python -m experiments.bench.step_bench --preset tiny --batch 8 --steps 3 --warmup 1   # CPU smoke run
  python -m experiments.bench.step_bench --trap --dtypes bfloat16          # + the constant-folding trap
  python -m experiments.bench.step_bench --hlo_only --batch 8 --dtypes bfloat16 --conv3d_impl xla
                                                                           # HLO reading, nothing timed
MFU = model FLOPs (experiments/bench/flops.py) / time / peak, with the peak given by --peak_tflops or measured
by a bf16 matmul (--matmul_size, default 8192 on an accelerator) in the same process.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.bench import flops as flops_lib
from pkdot_jax import models
from pkdot_jax.train import parallel, runinfo, steps
from pkdot_jax.train.state import TrainState, make_optimizer

VARIANTS = ("teacher", "cached", "none")
TRAPS = ("trap_vars", "trap_emb")


# ------------------------------------------------------------------------------------------------ setup
def make_config(preset: str = "paper", dtype: str = "float32", conv3d_impl: str = "auto",
                learning_rate: float = 1e-4, k: int = 30) -> ml_collections.ConfigDict:
  """{model, optimizer, distill} of the paper's student stage (Adam 1e-4, PKDOT k=30 eps=0.01 lambda=0.6).

  `k` (anchors per sample) must be < the batch size: tiny CPU runs pass a smaller one (the anchor script
  uses min(30, B - 1) likewise)."""
  config = ml_collections.ConfigDict()
  config.model = models.default_config(preset)
  config.model.dtype = dtype
  config.model.video.conv3d_impl = conv3d_impl
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=learning_rate, schedule="constant", warmup_steps=0, weight_decay=0.0, grad_clip=0.0,
      total_steps=1000,
      # As the trainer's student stage (tnet_fusion): the fitted T-Net gets zero updates.
      frozen_modules=("tnet",)))
  config.distill = ml_collections.ConfigDict(dict(method="pkdot", weight=0.6, task_weight=1.0, mt_pkdot=False,
                                                  kwargs=dict(k=k, epsilon=0.01)))
  return config


def synthetic_batch(cfg, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
  """A batch in the trainer's format with class structure (a label-dependent pattern added to the video and
  physio noise), so that embeddings and similarity rows are not pure noise."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, int(cfg.num_outputs), batch_size).astype(np.int32)
  video_shape, physio_shape = tuple(cfg.input_shapes.video), tuple(cfg.input_shapes.physio)
  patterns = rng.standard_normal((int(cfg.num_outputs), *video_shape)).astype(np.float32)
  video = rng.standard_normal((batch_size, *video_shape)).astype(np.float32) + 0.5 * patterns[labels]
  t = np.arange(physio_shape[0]) / float(cfg.spectrogram.fs)
  tone = np.sin(2 * np.pi * (20.0 + 40.0 * labels[:, None]) * t[None, :])[..., None]
  physio = (rng.standard_normal((batch_size, *physio_shape)) + tone).astype(np.float32)
  return {"video": video, "physio": physio, "label": labels, "mask": np.ones(batch_size, bool)}


def random_variables(model, batch: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any]:
  """Variables of `model` as NumPy arrays (He-normal by fan-in, BatchNorm scale 1 / var 1 / mean 0 / bias 0),
  shaped by `jax.eval_shape(model.init)`: no compiled init (slow on CPU at the paper size)."""
  abstract = jax.eval_shape(lambda b: model.init(jax.random.key(0), b, train=False), batch)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name in ("scale", "var"):
      return np.ones(leaf.shape, leaf.dtype)
    if name in ("bias", "mean"):
      return np.zeros(leaf.shape, leaf.dtype)
    fan_in = int(np.prod(leaf.shape[:-1])) or 1
    return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, abstract)


def student_stage(config, *, method: str):
  """(student, teacher, loss_fn) of the student stage, built exactly as the trainer does."""
  cfg = config.model
  student, teacher = models.build_student(cfg), models.build_teacher(cfg)
  distill = {"method": method, "kwargs": config.distill.kwargs.to_dict(),
             "task_weight": config.distill.task_weight, "mt_pkdot": config.distill.mt_pkdot}
  return student, teacher, steps.student_loss(student, teacher, cfg.task, distill)


def closed_over_teacher(loss_fn: Callable, teacher_variables) -> Callable:
  """THE TRAP (benchmark only): the frozen teacher's variables captured by the traced function."""
  def trapped(params, state, batch, rng):
    return loss_fn(params, state.replace(frozen={"teacher": teacher_variables}), batch, rng)
  return trapped


def closed_over_cache(loss_fn: Callable, fields: dict[str, jax.Array]) -> Callable:
  """THE TRAP (benchmark only): cached teacher outputs captured by the traced function."""
  def trapped(params, state, batch, rng):
    return loss_fn(params, state, {**batch, **fields}, rng)
  return trapped


class Bench:
  """Host copies of the variables and the batch of one (preset, dtype, batch size); builds device states."""

  def __init__(self, config, batch_size: int, seed: int = 0, mesh=None):
    self.config = config
    self.batch_size = batch_size
    self.mesh = mesh if mesh is not None else parallel.make_mesh(1)
    self.host_batch = synthetic_batch(config.model, batch_size, seed)
    student, teacher, _ = student_stage(config, method="none")
    probe = {k: v[:2] for k, v in self.host_batch.items()}
    self.student_vars = random_variables(student, probe, seed)
    self.teacher_vars = random_variables(teacher, probe, seed + 1)
    self.tx = make_optimizer(config)

  def state(self, *, with_teacher: bool) -> TrainState:
    params, batch_stats = self.student_vars["params"], self.student_vars.get("batch_stats", {})
    frozen = {"teacher": self.teacher_vars} if with_teacher else {}
    state = TrainState.create(params=params, batch_stats=batch_stats, opt_state=self.tx.init(params), frozen=frozen,
                              hparams={"distill_weight": self.config.distill.weight})
    return parallel.replicate(state, self.mesh)

  def batch(self, fields: tuple[str, ...]) -> dict[str, jax.Array]:
    return parallel.global_batch({k: self.host_batch[k] for k in fields}, self.mesh)

  def teacher_outputs(self) -> dict[str, jax.Array]:
    """The teacher cache's fields for this batch (eval-mode forward once, as the trainer's cache does)."""
    _, teacher, _ = student_stage(self.config, method="none")
    fn = jax.jit(lambda v, b: teacher.apply(v, b, train=False))
    out = fn(parallel.replicate(self.teacher_vars, self.mesh), self.batch(("video", "physio")))
    return {"teacher_embedding": out.embedding.astype(jnp.float32),
            "teacher_prediction": out.prediction.astype(jnp.float32)}

  def program(self, variant: str):
    """(jitted step, state, batch) of a variant; nothing compiled yet."""
    method = "none" if variant == "none" else self.config.distill.method
    _, _, loss_fn = student_stage(self.config, method=method)
    fields = ("video", "label", "mask")
    if variant == "teacher":
      state, batch = self.state(with_teacher=True), self.batch(fields + ("physio",))
    elif variant in ("cached", "none"):
      state, batch = self.state(with_teacher=False), self.batch(fields)
      if variant == "cached":
        batch = {**batch, **self.teacher_outputs()}
    elif variant == "trap_vars":
      loss_fn = closed_over_teacher(loss_fn, parallel.replicate(self.teacher_vars, self.mesh))
      state, batch = self.state(with_teacher=False), self.batch(fields + ("physio",))
    elif variant == "trap_emb":
      loss_fn = closed_over_cache(loss_fn, self.teacher_outputs())
      state, batch = self.state(with_teacher=False), self.batch(fields)
    else:
      raise ValueError(f"variant must be one of {VARIANTS + TRAPS}, got {variant!r}")
    return steps.jit_step(steps.make_train_step(loss_fn, self.tx), self.mesh), state, batch


# ------------------------------------------------------------------------------------------------ timing
def peak_bytes(device) -> int | None:
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # CPU backends may raise or return None
    return None
  return (stats or {}).get("peak_bytes_in_use")


def _percentile(values, q):
  return float(np.percentile(np.asarray(values), q))


def time_variant(bench: Bench, variant: str, *, steps_: int, warmup: int, peak_tflops: float | None,
                 model_flops: dict[str, Any]) -> dict[str, Any]:
  jitted, state, batch = bench.program(variant)
  rng = jax.random.PRNGKey(0)
  start = time.perf_counter()
  compiled = jitted.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - start
  memory, xla_flops = None, None
  try:
    m = compiled.memory_analysis()
    memory = {"temp": int(m.temp_size_in_bytes), "arguments": int(m.argument_size_in_bytes),
              "outputs": int(m.output_size_in_bytes)}
  except Exception:  # pylint: disable=broad-except
    pass
  try:
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    xla_flops = float(analysis.get("flops", 0.0)) or None
  except Exception:  # pylint: disable=broad-except
    pass

  all_metrics = []
  for _ in range(warmup):
    state, metrics = compiled(state, batch, rng)
    all_metrics.append(metrics)
  jax.block_until_ready(state)
  synced = []
  for _ in range(steps_):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, rng)
    jax.block_until_ready((state, metrics))
    synced.append((time.perf_counter() - t0) * 1e3)
    all_metrics.append(metrics)
  t0 = time.perf_counter()
  for _ in range(steps_):
    state, metrics = compiled(state, batch, rng)
    all_metrics.append(metrics)
  jax.block_until_ready((state, metrics))
  pipelined = (time.perf_counter() - t0) * 1e3 / steps_
  host = jax.device_get(all_metrics)

  b = bench.batch_size
  median = statistics.median(synced)
  with_teacher = variant in ("teacher", "trap_vars")
  step_flops = b * model_flops["train_step_with_teacher" if with_teacher else "train_step_cached"]
  device = jax.devices()[0]
  result = {
      "what": "step", "variant": variant, "dtype": bench.config.model.dtype,
      "method": "none" if variant == "none" else bench.config.distill.method,
      "k": bench.config.distill.kwargs.k,
      "device": f"{device.platform}:{device.device_kind}", "B": b,
      "video": list(bench.config.model.input_shapes.video),
      "conv3d_impl": bench.config.model.video.conv3d_impl,
      "ms_median": round(median, 3), "ms_p10": round(_percentile(synced, 10), 3),
      "ms_p90": round(_percentile(synced, 90), 3), "ms_pipelined": round(pipelined, 3),
      "clips_per_s": round(b / median * 1e3, 1), "clips_per_s_pipelined": round(b / pipelined * 1e3, 1),
      "steps": steps_, "warmup": warmup, "compile_s": round(compile_s, 2),
      "loss_first": float(host[0]["loss"]), "loss_last": float(host[-1]["loss"]),
      "finite_all": bool(all(float(m.get("finite", 1.0)) == 1.0 for m in host)),
      "peak_bytes": peak_bytes(device), "xla_bytes": memory,
      "model_tflop_per_step": round(step_flops / 1e12, 4),
      "xla_tflop_per_step": round(xla_flops / 1e12, 4) if xla_flops else None,
      "model_tflops_achieved": round(step_flops / (min(median, pipelined) * 1e-3) / 1e12, 3),
  }
  if peak_tflops:
    result["mfu"] = round(result["model_tflops_achieved"] / peak_tflops, 4)
  if "ot_iterations" in host[0]:
    iters = [int(m["ot_iterations"]) for m in host]
    result["ot_iterations"] = iters  # per step, from the first step of a fresh state
    result["ot_iterations_median"] = float(statistics.median(iters))
    result["ot_converged_all"] = bool(all(float(m["ot_converged"]) == 1.0 for m in host))
    result["distill_loss_first"] = float(host[0]["distill_loss"])
  return result


def matmul_peak(n: int, reps: int = 10) -> dict[str, Any]:
  """bf16 (n x n) @ (n x n) rate on the default device: the MFU denominator, measured in this run."""
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  a = jax.random.normal(keys[0], (n, n), jnp.bfloat16)
  b = jax.random.normal(keys[1], (n, n), jnp.bfloat16)
  fn = jax.jit(lambda x, y: x @ y)
  for _ in range(3):
    out = fn(a, b)
  jax.block_until_ready(out)
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(a, b))
    times.append(time.perf_counter() - t0)
  seconds = statistics.median(times)
  return {"what": "matmul_peak", "n": n, "dtype": "bfloat16", "ms": round(seconds * 1e3, 3),
          "tflops": round(2 * n ** 3 / seconds / 1e12, 2)}


# --------------------------------------------------------------------------------------------- HLO reading
_HLO_SHAPE = re.compile(r"\b(pred|s8|s32|u32|s64|u8|bf16|f16|f32|f64)\[([\d,]*)\]")
_MLIR_CONST = re.compile(r"stablehlo\.constant dense<.*?>\s*:\s*tensor<([^>]*)>")


def _elements(dims: str, sep: str) -> int:
  parts = [p for p in dims.split(sep) if p]
  return int(np.prod([int(p) for p in parts])) if parts else 1


_FLOAT_TYPES = ("f16", "bf16", "f32", "f64")


def large_constants(text: str, min_elements: int = 1000, floats_only: bool = True) -> list[tuple[str, int]]:
  """Constants with >= `min_elements` elements in StableHLO (`lowered.as_text()`) or HLO text: what a
  closed-over array (teacher variables, cached outputs, data) becomes. A correct step has no float ones.

  `floats_only` leaves out integer/bool tables (e.g. the spectrogram's frame gather indices, built with
  NumPy at trace time: structure, not data)."""
  found = []
  for match in _MLIR_CONST.finditer(text):
    dims, _, dtype = match.group(1).rpartition("x") if "x" in match.group(1) else ("", "", match.group(1))
    n = _elements(dims, "x")
    if n >= min_elements and (dtype in _FLOAT_TYPES or not floats_only):
      found.append((match.group(1), n))
  for line in text.splitlines():
    if " constant(" in line and "=" in line:
      shape = _HLO_SHAPE.search(line.split("=", 1)[1])
      if shape:
        n = _elements(shape.group(2), ",")
        if n >= min_elements and (shape.group(1) in _FLOAT_TYPES or not floats_only):
          found.append((f"{shape.group(1)}[{shape.group(2)}]", n))
  return found


def hlo_stats(text: str) -> dict[str, Any]:
  """Op census of optimized HLO text (`compiled.as_text()`): where a step's time can go."""
  ops = collections.Counter()
  conv_dtypes = collections.Counter()
  conv_layouts = collections.Counter()
  for line in text.splitlines():
    line = line.strip()
    match = re.match(r"^(?:ROOT\s+)?%?[\w.\-]+\s*=\s*(.+?)\s+([\w\-]+)\(", line)
    if not match:
      continue
    op = match.group(2)
    ops[op] += 1
    if op == "convolution" or (op == "custom-call" and "conv" in line.lower()):
      shape = _HLO_SHAPE.search(match.group(1))
      if shape:
        conv_dtypes[shape.group(1)] += 1
      dims = re.search(r"dim_labels=([\w_>\-]+)", line)
      if dims:
        conv_layouts[dims.group(1)] += 1
  entry_params = 0
  in_entry = False
  for line in text.splitlines():
    if line.startswith("ENTRY"):
      in_entry = True
    elif in_entry and line.startswith("}"):
      break
    elif in_entry and " parameter(" in line:
      entry_params += 1
  return {
      "convolution": ops["convolution"],
      "conv_custom_calls": sum(1 for l in text.splitlines() if "custom-call" in l and "conv" in l.lower()
                               and "custom_call_target" in l),
      "transpose": ops["transpose"], "copy": ops["copy"], "reduce": ops["reduce"],
      "reduce_window": ops["reduce-window"], "select_and_scatter": ops["select-and-scatter"],
      "dot": ops["dot"], "fusion": ops["fusion"], "while": ops["while"], "conditional": ops["conditional"],
      "all_reduce": ops["all-reduce"], "entry_parameters": entry_params,
      "large_float_constants": len(large_constants(text)),
      "large_int_constants": len(large_constants(text, floats_only=False)) - len(large_constants(text)),
      "conv_dtypes": dict(conv_dtypes), "conv_dim_labels": dict(conv_layouts.most_common(8)),
  }


def hlo_report(bench: Bench, variant: str, save_dir: str | None = None) -> dict[str, Any]:
  """Lowered StableHLO and compiled HLO of a variant (compiled for the default backend; no step is run).

  With `save_dir`, both texts are written there (<variant>_<dtype>.stablehlo.mlir / .optimized.hlo)."""
  jitted, state, batch = bench.program(variant)
  lowered = jitted.lower(state, batch, jax.random.PRNGKey(0))
  stablehlo = lowered.as_text()
  t0 = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  optimized = compiled.as_text()
  if save_dir:
    os.makedirs(save_dir, exist_ok=True)
    stem = os.path.join(save_dir, f"{variant}_{bench.config.model.dtype}_B{bench.batch_size}")
    with open(stem + ".stablehlo.mlir", "w") as f:
      f.write(stablehlo)
    with open(stem + ".optimized.hlo", "w") as f:
      f.write(optimized)
  mlir_ops = collections.Counter(re.findall(r"(stablehlo\.[a-z_]+)", stablehlo))
  return {
      "what": "hlo", "variant": variant, "dtype": bench.config.model.dtype, "B": bench.batch_size,
      "backend": jax.default_backend(), "conv3d_impl": bench.config.model.video.conv3d_impl,
      "compile_s": round(compile_s, 1),
      "stablehlo": {"convolution": mlir_ops["stablehlo.convolution"],
                    "transpose": mlir_ops["stablehlo.transpose"],
                    "dot_general": mlir_ops["stablehlo.dot_general"],
                    "reduce": mlir_ops["stablehlo.reduce"], "while": mlir_ops["stablehlo.while"],
                    "large_float_constants": len(large_constants(stablehlo)),
                    "large_int_constants": (len(large_constants(stablehlo, floats_only=False))
                                            - len(large_constants(stablehlo))),
                    "step_arguments": len(jax.tree.leaves((state, batch))) + 1},
      "optimized": hlo_stats(optimized),
  }


# ------------------------------------------------------------------------------------------------- main


def main(argv=None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--preset", default="paper", choices=("paper", "tiny"))
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=("float32", "bfloat16"))
  parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS + TRAPS)
  parser.add_argument("--trap", action="store_true", help="also time trap_vars and trap_emb (GPU: minutes)")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--conv3d_impl", default="auto", choices=("auto", "xla", "frames"))
  parser.add_argument("--peak_tflops", type=float, default=None, help="MFU denominator; else measured")
  parser.add_argument("--matmul_size", type=int, default=None, help="0 skips; default 8192 (GPU), 1024 (CPU)")
  parser.add_argument("--hlo_only", action="store_true", help="report HLO op counts, time nothing")
  parser.add_argument("--hlo_dir", default=None, help="with --hlo_only: also save the HLO texts here")
  parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--k", type=int, default=30, help="PKDOT anchors; min(k, batch - 1) is used")
  args = parser.parse_args(argv)
  k = min(args.k, args.batch - 1)

  results: list[dict[str, Any]] = []

  def emit(record):
    results.append(record)
    line = json.dumps(record)
    print(line, flush=True)
    if args.out:
      with open(args.out, "a") as f:
        f.write(line + "\n")

  device = jax.devices()[0]
  emit({"what": "env", "device": f"{device.platform}:{device.device_kind}", "jax": jax.__version__,
        "backend": jax.default_backend(), "cpu": runinfo.cpu_name(), "cores": os.cpu_count(),
        "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d"),
        # How this JAX treats arrays closed over by a jitted function (embedded constants vs hoisted arguments).
        "jax_constants": {k: jax.config.values.get(k) for k in (
            "jax_use_simplified_jaxpr_constants", "jax_embedded_constants_max_bytes")}})
  variants = list(args.variants) + (list(TRAPS) if args.trap else [])

  if args.hlo_only:
    for dtype in args.dtypes:
      bench = Bench(make_config(args.preset, dtype, args.conv3d_impl, k=k), args.batch, args.seed)
      for variant in variants:
        emit(hlo_report(bench, variant, args.hlo_dir))
    return results

  peak = args.peak_tflops
  matmul_size = args.matmul_size
  if matmul_size is None:
    matmul_size = 1024 if jax.default_backend() == "cpu" else 8192
  if peak is None and matmul_size:
    record = matmul_peak(matmul_size)
    emit(record)
    peak = record["tflops"]
  model_flops = flops_lib.model_flops(make_config(args.preset).model)
  emit({"what": "flops", "preset": args.preset, "per_clip_gflop": {
      k: round(v / 1e9, 4) for k, v in model_flops.items() if isinstance(v, int)}})

  for dtype in args.dtypes:
    bench = Bench(make_config(args.preset, dtype, args.conv3d_impl, k=k), args.batch, args.seed)
    timed = {}
    for variant in variants:
      try:
        record = time_variant(bench, variant, steps_=args.steps, warmup=args.warmup, peak_tflops=peak,
                              model_flops=model_flops)
      except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory: report, go on
        record = {"what": "step", "variant": variant, "dtype": dtype, "B": args.batch,
                  "error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(f"step_bench: {variant} {dtype} failed: {record['error']}", file=sys.stderr)
      emit(record)
      if "ms_median" in record:
        timed[variant] = record
    summary = {"what": "summary", "dtype": dtype, "B": args.batch}
    if "cached" in timed and "none" in timed:
      none_ms = timed["none"]["ms_median"]
      summary["ot_overhead"] = round((timed["cached"]["ms_median"] - none_ms) / none_ms, 4)
      summary["ot_ms"] = round(timed["cached"]["ms_median"] - none_ms, 3)
    if "teacher" in timed and "cached" in timed:
      summary["teacher_forward_ms"] = round(timed["teacher"]["ms_median"] - timed["cached"]["ms_median"], 3)
    for trap in TRAPS:
      base = "teacher" if trap == "trap_vars" else "cached"
      if trap in timed and base in timed:
        summary[f"{trap}_extra_ms"] = round(timed[trap]["ms_median"] - timed[base]["ms_median"], 3)
    emit(summary)
  return results


if __name__ == "__main__":
  main()
