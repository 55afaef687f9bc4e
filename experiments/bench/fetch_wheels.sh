#!/usr/bin/env bash
# Downloads, into .whl/ at the repo root, the wheels that run_gpu.sh needs on a GPU machine that has JAX, flax
# and PyTorch but no network access:
#   ott-jax 0.6.0 (PKDOT's Sinkhorn) and jaxopt (an ott-jax requirement), ml-collections (model/optimizer
#   configs), geomloss (the Sinkhorn of the PyTorch reference, torch_reference.py).
# Their other requirements (jax, lineax, optax, numpy, scipy, absl-py, PyYAML, torch) are expected on that
# machine. All four wheels are pure Python; they are chosen for Python 3.12 (change --python-version for another).
# .whl/ is ignored by git (.gitignore); copy it along with the checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
PIP=${PIP:-python3 -m pip}
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  ott-jax==0.6.0 jaxopt==0.8.5 ml-collections==1.1.0 geomloss==0.3.1
ls -l .whl
for w in .whl/*.whl; do
  echo "== $w"; unzip -p "$w" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true
done
