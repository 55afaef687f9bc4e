"""Comparison table of one device call: the PyTorch reference vs our loss and step benchmarks, against targets.

Reads the JSON-lines files that run_gpu.sh writes (torch_reference.py as the anchor rows, loss_bench.py,
step_bench.py; any missing or failed row is shown as such) and prints a plain-text table, last, with each
target's ratio and verdict. The targets are ratios against the anchor rows measured in the same call, so they
can be checked on any card (docs/benchmarks.md).

  python -m experiments.bench.table --anchor A.jsonl --loss L.jsonl --step S.jsonl [--trap T.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

# Targets: ratios against the PyTorch anchor rows measured in the same call (absolute for 4b).
TARGET_BF16 = 1.3     # teacher forward inside, bf16, vs torch bf16 autocast + channels_last_3d fine-tune
TARGET_FP32 = 1.5     # teacher forward inside, fp32, vs torch fp32 fine-tune
TARGET_CACHED = 1.6   # teacher cache, bf16, vs the same torch bf16 anchor
TARGET_OT = 0.05      # OT overhead inside the step
TARGET_LOSS = 8.0     # OT loss alone at B=128 vs torch + geomloss
TARGET_LOSS_8192_MS = 30.0


def read_jsonl(path: str | None) -> list[dict[str, Any]]:
  rows = []
  if not path or not os.path.exists(path):
    return rows
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line.startswith("{"):
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          pass
  return rows


def _find(rows, **match):
  for row in rows:
    if all(row.get(k) == v for k, v in match.items()):
      return row
  return None


def _fmt(x, nd=1):
  return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def _verdict(ok):
  return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def build_table(anchor, loss, step, trap) -> list[str]:
  lines = []
  torch_rows = [r for r in anchor if r.get("what") == "student_step"]
  t_bf16 = next((r for r in torch_rows if "bf16" in r.get("variant", "") and "ms" in r), None)
  t_fp32 = next((r for r in torch_rows if r.get("variant") == "finetune" and "ms" in r), None)
  t_ref = next((r for r in torch_rows if r.get("variant", "").startswith("reference") and "ms" in r), None)
  env = _find(step, what="env") or {}
  peak = _find(step, what="matmul_peak")
  lines.append(f"device: jax {env.get('device', '?')} (jax {env.get('jax', '?')}); torch "
               f"{(anchor[0].get('device') if anchor else 'not run')}; date {env.get('date', '?')}")
  if peak:
    lines.append(f"bf16 matmul {peak['n']}^3: {peak['tflops']} TFLOP/s (MFU denominator)")
  jax_shapes = {(r.get("B"), *(r.get("video") or [None, None])[:2]) for r in step if r.get("what") == "step"
                and "video" in r}
  torch_shapes = {(r.get("B"), r.get("T"), r.get("H")) for r in torch_rows if "B" in r}
  if jax_shapes and torch_shapes and jax_shapes != torch_shapes:
    lines.append(f"WARNING: shapes differ (jax (B, T, H) {sorted(jax_shapes)}, torch {sorted(torch_shapes)}): "
                 f"step ratios below are not comparable (a --tiny rehearsal?)")
  lines.append("")
  lines.append(f"{'row':44s} {'ms/step':>9s} {'p10-p90':>15s} {'clips/s':>9s} {'MFU':>6s} {'OT it':>7s}")
  for r in torch_rows:
    if "ms" in r:
      lines.append(f"{'torch ' + r['variant']:44s} {r['ms']:9.1f} {'':>15s} {r['clips_per_s']:9.0f} "
                   f"{'':>6s} {'':>7s}   ot_overhead {r.get('ot_overhead', 0):+.1%}")
    else:
      lines.append(f"{'torch ' + r.get('variant', '?'):44s} ERROR {r.get('error', '')[:60]}")
  for r in step + trap:
    if r.get("what") != "step":
      continue
    name = f"jax {r['variant']} {r['dtype']}"
    if "error" in r:
      lines.append(f"{name:44s} ERROR {r['error'][:60]}")
      continue
    it = r.get("ot_iterations_median")
    lines.append(f"{name:44s} {r['ms_median']:9.1f} {r['ms_p10']:7.1f}-{r['ms_p90']:<7.1f} "
                 f"{r['clips_per_s']:9.0f} {_fmt(r.get('mfu'), 3):>6s} {_fmt(it, 0):>7s}"
                 f"   pipelined {r['ms_pipelined']:.1f} ms, peak "
                 f"{_fmt(r['peak_bytes'] / 2**30 if r.get('peak_bytes') else None, 2)} GiB")
  lines.append("")

  def jax_row(variant, dtype, rows=step):
    r = _find(rows, what="step", variant=variant, dtype=dtype)
    return r if r and "ms_median" in r else None

  lines.append("targets")
  j = jax_row("teacher", "bfloat16")
  ratio = j["clips_per_s"] / t_bf16["clips_per_s"] if j and t_bf16 else None
  lines.append(f"1a bf16, teacher fwd inside, vs torch bf16+channels_last: {_fmt(ratio, 2)}x "
               f"(>= {TARGET_BF16}x) {_verdict(None if ratio is None else ratio >= TARGET_BF16)}")
  j = jax_row("teacher", "float32")
  ratio = j["clips_per_s"] / t_fp32["clips_per_s"] if j and t_fp32 else None
  lines.append(f"1b fp32, teacher fwd inside, vs torch fp32 fine-tune:     {_fmt(ratio, 2)}x "
               f"(>= {TARGET_FP32}x) {_verdict(None if ratio is None else ratio >= TARGET_FP32)}")
  j = jax_row("cached", "bfloat16")
  ratio = j["clips_per_s"] / t_bf16["clips_per_s"] if j and t_bf16 else None
  lines.append(f"2  bf16, teacher cache, vs torch bf16+channels_last:      {_fmt(ratio, 2)}x "
               f"(>= {TARGET_CACHED}x) {_verdict(None if ratio is None else ratio >= TARGET_CACHED)}")
  summary = _find(step, what="summary", dtype="bfloat16") or {}
  overhead = summary.get("ot_overhead")
  cached = jax_row("cached", "bfloat16")
  iters = cached.get("ot_iterations") if cached else None
  lines.append(f"3  OT overhead (cached - none) / none, bf16: {_fmt(None if overhead is None else 100 * overhead, 2)}% "
               f"= {_fmt(summary.get('ot_ms'), 2)} ms (<= {TARGET_OT:.0%}) "
               f"{_verdict(None if overhead is None else overhead <= TARGET_OT)}")
  if iters:
    lines.append(f"   Sinkhorn iterations per step (first {min(len(iters), 12)} of {len(iters)} from a fresh "
                 f"state): {iters[:12]}; all converged: {cached.get('ot_converged_all')}")
  t_loss = {r["B"]: r for r in anchor if r.get("what") == "loss_fwd_bwd" and "ms" in r}
  j_loss = {r["B"]: r for r in loss if "ms_median" in r}
  if 128 in t_loss and 128 in j_loss:
    ratio = t_loss[128]["ms"] / j_loss[128]["ms_median"]
  else:
    ratio = None
  lines.append(f"4a OT loss B=128, torch+geomloss / ours: {_fmt(ratio, 1)}x (>= {TARGET_LOSS}x) "
               f"{_verdict(None if ratio is None else ratio >= TARGET_LOSS)}")
  ms = j_loss.get(8192, {}).get("ms_median")
  lines.append(f"4b OT loss B=8192: {_fmt(ms, 2)} ms (<= {TARGET_LOSS_8192_MS} ms) "
               f"{_verdict(None if ms is None else ms <= TARGET_LOSS_8192_MS)}")
  for b in sorted(set(t_loss) | set(j_loss)):
    tl, jl = t_loss.get(b), j_loss.get(b)
    lines.append(f"   loss B={b:5d}: torch {_fmt(tl and tl['ms'], 2)} ms, ours {_fmt(jl and jl['ms_median'], 2)} ms, "
                 f"iterations {jl and jl.get('n_iters')}, converged {jl and jl.get('converged')}")
  mfus = [f"{r['variant']}/{r['dtype']} {r['mfu']:.1%}" for r in step if r.get("what") == "step" and "mfu" in r]
  lines.append(f"5  MFU (model FLOPs / time / measured bf16 matmul rate): {', '.join(mfus) or '-'}")
  for variant, base in (("trap_vars", "teacher"), ("trap_emb", "cached")):
    t = jax_row(variant, "bfloat16", trap) or jax_row(variant, "bfloat16")
    b = jax_row(base, "bfloat16")
    if t and b:
      lines.append(f"   constant-folding trap {variant}: {t['ms_median'] - b['ms_median']:+.1f} ms/step vs {base} "
                   f"(compile {t['compile_s']} s vs {b['compile_s']} s)")
  if t_ref:
    lines.append(f"   (torch authors' setup, frozen student backbone: {t_ref['clips_per_s']:.0f} clips/s)")
  return lines


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--anchor")
  parser.add_argument("--loss")
  parser.add_argument("--step")
  parser.add_argument("--trap")
  args = parser.parse_args(argv)
  lines = build_table(read_jsonl(args.anchor), read_jsonl(args.loss), read_jsonl(args.step), read_jsonl(args.trap))
  print("\n".join(lines))


if __name__ == "__main__":
  main()
