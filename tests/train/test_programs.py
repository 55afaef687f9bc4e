"""Compiled programs are built from a frozen `ProgramSpec` alone, and the spec is their cache key: a field that
changes a program changes its spec; a field a builder reads but the spec lacks is an error, never a stale
program; fields that reach a program only as data (seeds, weights, the fold, the loss) leave the key alone."""

import dataclasses
import inspect

import pytest

from pkdot_jax.train import evaluation, parallel, programs, schema, stages
from pkdot_jax.train.programs import ProgramSpec
from train_helpers import smoke_config

KINDS = ("train_step", "init", "eval")


def _leaves(node, prefix):
  """(dotted path, value) of every scalar under a config node."""
  if hasattr(node, "items") and not isinstance(node, str):
    for key, value in node.items():
      yield from _leaves(value, f"{prefix}.{key}")
  elif isinstance(node, (bool, int, float, str)):
    yield prefix, node


def _changed(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, (int, float)):
    return value + 1
  return value + "_other"


def _set(config, path, value):
  config = config.copy_and_resolve_references()
  node = config
  *parents, leaf = path.split(".")
  for key in parents:
    node = node[key]
  node[leaf] = value
  return config


def _key(kind, stage, config, **kwargs):
  return ProgramSpec.of(kind, stage, config, **kwargs).key()


@pytest.mark.parametrize("stage", stages.STAGE_ORDER)
def test_every_program_field_changes_the_key(stage, tmp_path):
  """Each scalar under each of the stage's program fields (the whole model config among them) changes the key
  of every program of the stage."""
  config = smoke_config(tmp_path)
  leaves = [leaf for path in stages.get(stage).program_fields
            for leaf in _leaves(programs.restrict(config, (path,)), "")]
  assert len(leaves) > 10  # the model config's fields at least
  for path, value in leaves:
    changed = _set(config, path.lstrip("."), _changed(value))
    for kind in KINDS:
      assert _key(kind, stage, config) != _key(kind, stage, changed), (stage, kind, path)


@pytest.mark.parametrize("path,value", [("seeds", (3, 4)), ("distill.weight", 0.1), ("data.fold", 1),
                                        ("distill.method", "rkd"), ("distill.task_weight", 0.5),
                                        ("log_every", 3), ("teacher_workdir", "elsewhere")])
def test_data_and_host_fields_share_programs(path, value, tmp_path):
  """Array, loss and host fields never reach a spec: runs differing in them share every compiled program."""
  config = smoke_config(tmp_path)
  changed = _set(config, path, value)
  for stage in stages.STAGE_ORDER:
    for kind in KINDS:
      assert _key(kind, stage, config) == _key(kind, stage, changed), (stage, kind, path)


def test_losses_optimizer_mesh_and_members_are_in_the_key(tmp_path):
  config = smoke_config(tmp_path)
  opt = config.copy_and_resolve_references()
  opt.optimizer.total_steps = 10
  base = _key("train_step", "student", config, opt_config=opt, losses=[{"method": "pkdot"}])
  assert base != _key("train_step", "student", config, opt_config=opt, losses=[{"method": "rkd"}])
  assert base != _key("train_step", "student", config, opt_config=opt, losses=[{"method": "pkdot"}], vmapped=True)
  assert base != _key("train_step", "student", config, opt_config=opt, losses=[{"method": "pkdot"}],
                      mesh=parallel.make_mesh(1))
  assert base != _key("train_step", "student", _set(opt, "optimizer.learning_rate", 0.5), opt_config=_set(
      opt, "optimizer.learning_rate", 0.5), losses=[{"method": "pkdot"}])
  # total_steps shapes the optimizer only under a schedule: folds of different sizes share a constant-rate step.
  longer = _set(opt, "optimizer.total_steps", 20)
  assert base == _key("train_step", "student", config, opt_config=longer, losses=[{"method": "pkdot"}])
  cosine, cosine_longer = (_set(o, "optimizer.schedule", "cosine") for o in (opt, longer))
  assert _key("opt_init", "", config, opt_config=cosine) != _key("opt_init", "", config, opt_config=cosine_longer)
  assert _key("init", "student", config) != _key("init", "student", config, grafted=("tnet",))


def test_the_spec_is_frozen_and_the_builders_take_it_alone(tmp_path):
  spec = ProgramSpec.of("eval", "teacher", smoke_config(tmp_path))
  with pytest.raises(dataclasses.FrozenInstanceError):
    spec.stage = "student"  # type: ignore[misc]
  assert hash(spec) == hash(ProgramSpec.of("eval", "teacher", smoke_config(tmp_path)))
  for build in (programs.build_train_step, programs.build_init, programs.build_opt_init, evaluation.build_eval):
    assert list(inspect.signature(build).parameters) == ["spec"], build.__name__
  assert set(spec.config().keys()) == {"model"}  # the builder's whole view of the config


def test_a_builder_reading_a_field_outside_the_spec_fails(tmp_path, monkeypatch):
  """A stage whose model reads a field it does not declare: building its program raises, naming the field,
  instead of compiling a program that another value of the field would reuse."""
  teacher = stages.get("teacher")
  leaky = dataclasses.replace(teacher, models=lambda config: teacher.models(config) if config.batch_size else None)
  monkeypatch.setattr(stages, "STAGES", {**stages.STAGES, "teacher": leaky})
  config = smoke_config(tmp_path)
  with pytest.raises(AttributeError, match="batch_size"):
    programs.build_init(ProgramSpec.of("init", "teacher", config))
  with pytest.raises(AttributeError, match="batch_size"):
    evaluation.build_eval(ProgramSpec.of("eval", "teacher", config))


def test_program_fields_shape_programs_by_the_schema(tmp_path):
  """Every stage's program fields exist and carry none of the schema's program-neutral roles; declaring one
  that does is refused when a spec is made."""
  config = smoke_config(tmp_path)
  neutral = set(schema.paths(schema.HOST) + schema.paths(schema.LOSS) + schema.paths(schema.ARRAY))
  for name in stages.STAGE_ORDER:
    for path in stages.get(name).program_fields:
      assert path not in neutral, (name, path)
      programs.restrict(config, (path,))  # present in the config
  with pytest.raises(ValueError, match="distill.weight"):
    programs.restrict(config, ("model", "distill.weight"))
  with pytest.raises(ValueError, match="unknown program kind"):
    ProgramSpec.of("step", "teacher", config)
