"""The light install: the loss library runs without the trainer's packages (the exact check CI runs in a fresh
core-only environment, here with those packages blocked), `pkdot` without them says what to install in one
line, and the loss docs' jit lines run as written."""

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The `train` extra's packages that the core dependencies (jax, ott-jax, numpy and theirs) do not bring.
TRAIN_ONLY = ("flax", "orbax", "orbax.checkpoint", "tensorflow_datasets", "grain", "ml_collections", "matplotlib",
              "tqdm", "PIL", "av", "array_record", "tensorboardX")


def _python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
  """`code` in a fresh interpreter where importing any train-only package fails, as in a core install."""
  block = f"import sys\nfor name in {TRAIN_ONLY!r}:\n  sys.modules[name] = None\n"
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-c", block + code], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=timeout)


def test_the_loss_library_runs_without_the_trainer_packages():
  proc = _python("import runpy\nrunpy.run_path('.ci/core_check.py', run_name='__main__')")
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "all checks passed" in proc.stdout


def test_pkdot_without_the_train_extra_says_what_to_install():
  proc = _python("from pkdot_jax import cli\ncli.run(['pkdot', 'train', '--help'])", timeout=120)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, proc.stderr
  assert len(lines) == 1 and lines[0].startswith("pkdot: error: "), proc.stderr
  assert 'pip install "pkdot-jax[train]"' in lines[0] and "flax" in lines[0] and "Traceback" not in proc.stderr


def test_with_the_train_extra_nothing_is_missing():
  from pkdot_jax import cli
  assert cli.missing_train_modules() == []


def _python_block(path: str, after: str, containing: str) -> str:
  """The first ```python block of `path` after the line `after` that contains `containing`, dedented."""
  text = open(os.path.join(ROOT, path)).read()
  text = text[text.index(after):]
  for block in re.findall(r"```python\n(.*?)```", text, re.S):
    if containing in block:
      lines = block.splitlines()
      indent = min(len(l) - len(l.lstrip()) for l in lines if l.strip())
      return "\n".join(l[indent:] for l in lines)
  raise AssertionError(f"no python block with {containing!r} in {path}")


STUDENT = jax.random.normal(jax.random.key(0), (24, 8))
TEACHER = jax.random.normal(jax.random.key(1), (24, 8))


def _reference_k8() -> float:
  """pkdot(STUDENT, TEACHER, k=8) through a jit of its own (compiled once for both doc tests)."""
  if not _REFERENCE:
    from pkdot_jax import losses
    _REFERENCE.append(float(jax.jit(lambda s, t: losses.pkdot(s, t, k=8))(STUDENT, TEACHER)))
  return _REFERENCE[0]


_REFERENCE: list[float] = []


def test_the_readme_loss_lines_run_as_written():
  student, teacher = STUDENT, TEACHER
  scope = {"student_emb": student, "teacher_emb": teacher}
  lines = _python_block("README.md", "## The loss library", "static_argnames").splitlines()
  start = next(i for i, line in enumerate(lines) if "static_argnames" in line)
  # The block's imports and its jit lines, verbatim (the eager lines above them are covered by the loss tests).
  exec("\n".join([line for line in lines[:start] if line.startswith(("import ", "from "))] + lines[start:]),
       scope)  # noqa: S102
  # The block's last line: k=8 fixed with functools.partial.
  np.testing.assert_allclose(float(scope["loss"]), _reference_k8(), rtol=1e-5)


def test_the_design_doc_jit_lines_run_as_written():
  import functools
  from pkdot_jax import losses
  scope = {"jax": jax, "functools": functools, "losses": losses, "student": STUDENT, "teacher": TEACHER}
  exec(_python_block("docs/design.md", "## 3. What the library computes", "static_argnames"), scope)  # noqa: S102
  np.testing.assert_allclose(float(scope["loss"]), _reference_k8(), rtol=1e-5)
  assert float(scope["pkdot"](STUDENT, TEACHER, k=8, epsilon=0.05)) != pytest.approx(_reference_k8())  # eps used
