#!/usr/bin/env bash
# Downloads, into .whl/ at the repo root, the wheels that the GPU image lacks for run_gpu.sh:
#   ott-jax 0.6.0 (PKDOT's Sinkhorn) and jaxopt (an ott-jax requirement the image does not have),
#   ml-collections (model/optimizer configs), geomloss (the PyTorch anchor's Sinkhorn).
# Everything else ott-jax, flax and the anchor need is in the image (jax 0.11.2, flax, optax, orbax, chex,
# equinox, lineax, optimistix, jaxtyping, numpy, scipy, absl-py, pyyaml, typing-extensions, torch 2.11;
# /work/.library/device/KINDS.md, "Python packages already there"). All four wheels are pure Python.
# Also copies the PyTorch anchor ../shared/bench/anchor_torch.py into .anchor/ (../shared does not travel to
# the device). Both folders are ignored (.git/info/exclude) and travel with `run(carry=[".whl", ".anchor"])`.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
for d in /.whl/ /.anchor/; do
  grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude
done
mkdir -p .anchor
cp "${ANCHOR:-../shared/bench/anchor_torch.py}" .anchor/anchor_torch.py
PIP=${PIP:-python3 -m pip}
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  ott-jax==0.6.0 jaxopt==0.8.5 ml-collections==1.1.0 geomloss==0.3.1
ls -l .whl
for w in .whl/*.whl; do
  echo "== $w"; unzip -p "$w" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true
done
