#!/usr/bin/env bash
# All GPU benchmarks in one call: the PyTorch reference (torch_reference.py), the OT loss benchmark and the
# student-step benchmark, then the comparison table against the targets (docs/benchmarks.md).
#
#   bash experiments/bench/run_gpu.sh           # on the GPU machine, from the repository root
#   bash experiments/bench/run_gpu.sh --tiny    # CPU rehearsal of the same logic: tiny shapes; the PyTorch
#                                               # reference is skipped when torch, torchvision or geomloss
#                                               # cannot be imported
# A machine without network access and without ott-jax, jaxopt, ml-collections or geomloss gets them from
# .whl/ at the repository root: fill it beforehand with `bash experiments/bench/fetch_wheels.sh` and copy it
# along with the checkout; they are installed beside the machine's packages, never over them.
#
# Everything goes under $OUT (/tmp/pkdot_bench unless set), at most 8 files:
#   env.txt, anchor.jsonl, loss.jsonl, step.jsonl, trap.jsonl, compare.jsonl, table.txt, log.txt
# The stages share a wall-clock budget (RUN_GPU_BUDGET_S, default 540 s): each gets a timeout that leaves
# room for the rest and for the table, which is always printed last.
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
BUDGET=${RUN_GPU_BUDGET_S:-540}
OUT=${OUT:-/tmp/pkdot_bench}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
TORCH_PY=${TORCH_PYTHON:-$PY}   # the PyTorch reference may run in another environment
TINY=0
[ "${1:-}" = "--tiny" ] && TINY=1
export PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log.txt") 2>&1

# Wheels the image lacks (ott-jax, jaxopt, ml-collections, geomloss; see fetch_wheels.sh), installed beside
# the image's packages, never over them.
if ls .whl/*.whl >/dev/null 2>&1; then
  if ! $PY -c "import ott, jaxopt, ml_collections" 2>/dev/null || [ $TINY = 0 ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "run_gpu: wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  elif ! $PY -c "import geomloss" 2>/dev/null; then
    # CPU rehearsal: the venv has the JAX side; geomloss goes beside it like on the device.
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site_geomloss \
      .whl/geomloss-*.whl && export PYTHONPATH=/tmp/site_geomloss${PYTHONPATH:+:$PYTHONPATH}
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  (nvidia-smi -L 2>/dev/null || echo "no nvidia-smi")
  nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.total,driver_version --format=csv 2>/dev/null
  $PY -c "import sys; print('python', sys.version.split()[0])"
  $PY -c "import jax, flax, optax; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__)" 2>&1
  $PY -c "import importlib.metadata as m, ott, jaxopt, lineax, equinox, ml_collections; print(*(f'{p} {m.version(p)}' for p in ('ott-jax', 'jaxopt', 'lineax', 'equinox', 'ml-collections', 'numpy')))" 2>&1
  $TORCH_PY -c "import torch, torchvision; print('torch', torch.__version__, torch.cuda.is_available(), 'torchvision', torchvision.__version__)" 2>&1
  $TORCH_PY -c "import geomloss; print('geomloss', geomloss.__version__)" 2>&1
  nproc
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# stage NAME LIMIT_S CMD...: run CMD with timeout min(LIMIT_S, time left - 25 s for the table); skip if < 30 s.
stage() {
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) - 25 ))
  (( left < limit )) && limit=$left
  if (( limit < 30 )); then echo "== $name: SKIPPED (budget spent)" >&2; return 0; fi
  echo "== $name (timeout ${limit}s) $(date +%T)" >&2
  local t0=$(date +%s)
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: rc=$rc in $(( $(date +%s) - t0 ))s" >&2
  return 0
}

if [ $TINY = 1 ]; then
  ANCHOR_ARGS=(--tiny); LOSS_ARGS=(--batch_sizes 128 256 --repeats 3)
  STEP=(--preset tiny --batch 8 --k 5 --steps 3 --warmup 1)
  L_ANCHOR=300; L_LOSS=120; L_BF16=300; L_FP32=200; L_TRAP=200; L_COMPARE=120
  COMPARE_ARGS=(--batch_sizes 128 256 --repeats 3)
else
  ANCHOR_ARGS=(); LOSS_ARGS=(--repeats 20)
  STEP=(--preset paper --batch 128 --steps 15 --warmup 3)
  L_ANCHOR=150; L_LOSS=75; L_BF16=200; L_FP32=100; L_TRAP=90; L_COMPARE=60
  COMPARE_ARGS=(--batch_sizes 128 8192 --repeats 10)
fi

# 1. The PyTorch reference (the authors' step and geomloss loss), same card, same call: the anchor rows.
if $TORCH_PY -c "import torch, torchvision, geomloss" 2>/dev/null; then
  stage torch_reference $L_ANCHOR $TORCH_PY experiments/bench/torch_reference.py "${ANCHOR_ARGS[@]}" \
    > "$OUT/anchor.jsonl"
  cat "$OUT/anchor.jsonl"
else
  echo "== torch_reference: SKIPPED (torch, torchvision or geomloss not importable by $TORCH_PY)"
fi
# 2. The OT loss alone (B = 128 ... 8192).
stage loss_bench $L_LOSS $PY -m experiments.bench.loss_bench "${LOSS_ARGS[@]}" > "$OUT/loss.jsonl"
cat "$OUT/loss.jsonl"
# 3. The student step: bf16 (teacher fwd inside, teacher cache, no OT), measures the bf16 matmul peak; then fp32
#    with the teacher forward inside (target 1b); then the constant-folding trap (bf16), last because its
#    compile time is unknown.
stage step_bf16 $L_BF16 $PY -m experiments.bench.step_bench "${STEP[@]}" --dtypes bfloat16 \
  --variants teacher cached none --out "$OUT/step.jsonl" > /dev/null
PEAK=$($PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if '\"matmul_peak\"' in l]; print(r[0]['tflops'] if r else '')" "$OUT/step.jsonl" 2>/dev/null)
PEAK_ARGS=(--matmul_size 0); [ -n "$PEAK" ] && PEAK_ARGS+=(--peak_tflops "$PEAK")
stage step_fp32 $L_FP32 $PY -m experiments.bench.step_bench "${STEP[@]}" --dtypes float32 \
  --variants teacher "${PEAK_ARGS[@]}" --out "$OUT/step.jsonl" > /dev/null
stage step_trap $L_TRAP $PY -m experiments.bench.step_bench "${STEP[@]}" --dtypes bfloat16 \
  --variants trap_vars trap_emb "${PEAK_ARGS[@]}" --steps 5 --out "$OUT/trap.jsonl" > /dev/null
cat "$OUT/step.jsonl" "$OUT/trap.jsonl" 2>/dev/null
# 4. If time is left: the divergence alone, ours (one-pass symmetric fixed point) vs ott's three solves.
stage loss_compare $L_COMPARE $PY -m experiments.bench.loss_bench --compare_ott "${COMPARE_ARGS[@]}" \
  > "$OUT/compare.jsonl"
cat "$OUT/compare.jsonl"

echo "== table ($(( $(date +%s) - START ))s elapsed)"
$PY -m experiments.bench.table --anchor "$OUT/anchor.jsonl" --loss "$OUT/loss.jsonl" --step "$OUT/step.jsonl" \
  --trap "$OUT/trap.jsonl" | tee "$OUT/table.txt"
