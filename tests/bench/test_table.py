"""The device call's comparison table: ratios and verdicts from the JSON rows of the anchor and our benchmarks."""

from experiments.bench import table


def _step(variant, dtype, ms, b=128, **extra):
  return {"what": "step", "variant": variant, "dtype": dtype, "B": b, "ms_median": ms, "ms_p10": ms,
          "ms_p90": ms, "ms_pipelined": ms, "clips_per_s": b / ms * 1e3, "compile_s": 1.0, **extra}


def test_verdicts_from_rows():
  anchor = [
      {"what": "loss_fwd_bwd", "B": 128, "ms": 10.0, "device": "GPU"},
      {"what": "student_step", "variant": "finetune", "ms": 262.0, "clips_per_s": 488.0},
      {"what": "student_step", "variant": "finetune+bf16+channels_last", "ms": 123.0, "clips_per_s": 1044.0},
  ]
  loss = [{"B": 128, "ms_median": 1.0, "n_iters": [10, 20, 20], "converged": True},
          {"B": 8192, "ms_median": 35.0}]
  step = [
      {"what": "env", "device": "gpu:H200", "jax": "0.11.2"},
      _step("teacher", "bfloat16", 80.0, mfu=0.5),       # 1,600 clips/s = 1.53x  -> met
      _step("cached", "bfloat16", 70.0, ot_iterations=[20, 10], ot_converged_all=True),  # 1.75x -> met
      _step("none", "bfloat16", 68.0),
      _step("teacher", "float32", 200.0),                # 640 clips/s = 1.31x -> not met
      {"what": "summary", "dtype": "bfloat16", "ot_overhead": 2.0 / 68.0, "ot_ms": 2.0},
  ]
  text = "\n".join(table.build_table(anchor, loss, step, []))
  lines = {line[:2]: line for line in text.splitlines() if line[:2] in ("1a", "1b", "2 ", "3 ", "4a", "4b")}
  assert "1.53x" in lines["1a"] and lines["1a"].endswith(" MET")
  assert "1.31x" in lines["1b"] and lines["1b"].endswith("NOT MET")
  assert "1.75x" in lines["2 "] and lines["2 "].endswith(" MET")
  assert "2.94%" in lines["3 "] and lines["3 "].endswith(" MET")
  assert "10.0x" in lines["4a"] and lines["4a"].endswith(" MET")
  assert lines["4b"].endswith("NOT MET")


def test_missing_rows_are_not_verdicts():
  text = "\n".join(table.build_table([], [], [], []))
  assert "MET" not in text.replace("n/a", "")


def test_table_reads_the_torch_reference_variants():
  # torch is not a dependency of the tests: read the reference script's variant names from its source and
  # check that the table finds each anchor row it compares against.
  import ast
  import pathlib
  source = (pathlib.Path(table.__file__).parent / "torch_reference.py").read_text()
  assignment = next(node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                    and getattr(node.targets[0], "id", None) == "STEP_VARIANTS")
  variants = ast.literal_eval(assignment.value)
  anchor = [{"what": "student_step", "variant": v, "ms": 100.0 + i, "clips_per_s": 1000.0 - i, "B": 128, "T": 10,
             "H": 112, "device": "GPU"} for i, v in enumerate(variants)]
  text = "\n".join(table.build_table(anchor, [], [], []))
  for variant in variants:
    assert f"torch {variant}" in text
  assert "frozen student backbone: 1000 clips/s" in text   # the authors' setup row is recognised
  step = [_step("teacher", "bfloat16", 50.0), _step("teacher", "float32", 100.0)]
  lines = {line[:2]: line for line in table.build_table(anchor, [], step, [])}
  assert "n/a" not in lines["1a"] and "n/a" not in lines["1b"]   # bf16 and fp32 fine-tune rows found
