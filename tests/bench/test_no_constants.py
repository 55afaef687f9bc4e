"""The student step takes the teacher as an argument: no large float constant is embedded in its program.

A closed-over teacher (variables or cached outputs) is embedded as constants and XLA constant-folds around
it: 54 ms per step, measured on one NVIDIA H200 (docs/benchmarks.md). This lowers (no compile) the tiny
student step exactly as the trainer builds it and looks for float constants of >= 1000 elements.
"""

import jax
import pytest

from experiments.bench import step_bench


@pytest.fixture(scope="module")
def bench():
  return step_bench.Bench(step_bench.make_config("tiny", k=3), batch_size=4)


def _lowered_text(bench, variant):
  jitted, state, batch = bench.program(variant)
  return jitted.lower(state, batch, jax.random.PRNGKey(0)).as_text()


@pytest.mark.parametrize("variant", ["teacher", "cached"])
def test_student_step_embeds_no_large_constants(bench, variant):
  text = _lowered_text(bench, variant)
  assert step_bench.large_constants(text) == []


def test_detector_finds_a_closed_over_teacher(bench):
  if jax.config.values.get("jax_use_simplified_jaxpr_constants"):
    pytest.skip("this JAX hoists closed-over arrays into arguments instead of embedding them")
  found = step_bench.large_constants(_lowered_text(bench, "trap_vars"))
  # The tiny teacher's stem kernel (3, 7, 7, 3, 8) is among them.
  assert ("3x7x7x3x8xf32", 3 * 7 * 7 * 3 * 8) in found


def test_constant_parser_on_both_formats():
  mlir = ('%c = stablehlo.constant dense<1.0> : tensor<64x32xf32>\n'
          '%i = stablehlo.constant dense<0> : tensor<31x64xi32>\n'
          '%s = stablehlo.constant dense<2.0> : tensor<f32>')
  assert step_bench.large_constants(mlir) == [("64x32xf32", 2048)]
  assert len(step_bench.large_constants(mlir, floats_only=False)) == 2
  hlo = "  %constant.7 = bf16[512,512]{1,0} constant({...})\n  %p = f32[9]{0} parameter(0)"
  assert step_bench.large_constants(hlo) == [("bf16[512,512]", 262144)]


def test_hlo_census():
  hlo = """HloModule m
ENTRY %main (p0: f32[2,8,8,3], p1: f32[3,3,3,4]) -> f32[2,8,8,4] {
  %p0 = f32[2,8,8,3]{3,2,1,0} parameter(0)
  %p1 = f32[3,3,3,4]{3,2,1,0} parameter(1)
  %t = f32[3,3,3,4]{3,2,1,0} transpose(%p1), dimensions={0,1,2,3}
  ROOT %c = f32[2,8,8,4]{3,2,1,0} convolution(%p0, %t), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f
}
"""
  stats = step_bench.hlo_stats(hlo)
  assert stats["convolution"] == 1 and stats["transpose"] == 1 and stats["entry_parameters"] == 2
  assert stats["conv_dim_labels"] == {"b01f_01io->b01f": 1} and stats["conv_dtypes"] == {"f32": 1}
