"""The config schema: every built-in config and method preset passes it, the derived field roles are the ones
the trainer relied on, every loss argument is typed from its signature, and bad values name their field."""

import inspect

import pytest

from pkdot_jax import configs, losses
from pkdot_jax.study import methods, sweep
from pkdot_jax.train import checkpoint, schema, stages

BUILTIN = ["synthetic", "synthetic:smoke", "synthetic:demo", "synthetic:demo_quick", "synthetic:demo_all",
           "synthetic:demo_size", "biovid_binary", "biovid_binary:authors", "biovid_binary:smoke", "biovid_5class",
           "affwild2_va", "affwild2_va:smoke"]


@pytest.mark.parametrize("spec", BUILTIN)
def test_builtin_configs_pass(spec):
  schema.validate(configs.load(spec))


@pytest.mark.parametrize("method", sorted(methods.METHODS) + ["pkdot@grid", "generalized_distillation@grid"])
def test_method_presets_pass_on_the_demo_config(method):
  """A preset on a config tuned for PKDOT never inherits PKDOT's arguments (pkt with k=8 was a TypeError)."""
  config = sweep.apply_overrides(configs.load("synthetic:demo"), {"method": method})
  schema.validate(config)


def test_derived_roles_are_the_trainer_s_field_sets():
  assert set(stages.FIELDS.student_side) == {"distill", "stages.student", "model.student", "cache_teacher",
                                              "student_init_from_teacher", "student_backbone", "select_metric"}
  assert set(stages.FIELDS.run_only) == {"pipeline", "teacher_workdir", "log_every", "progress"}
  assert set(stages.FIELDS.losses) == {"distill.method", "distill.kwargs", "distill.method_kwargs",
                                       "distill.mt_pkdot", "distill.extra"}
  assert set(stages.FIELDS.arrays) == {"distill.weight", "distill.task_weight", "seeds", "data.fold"}
  assert set(checkpoint.RESUME_IGNORED_FIELDS) == {"log_every", "progress"}


def test_every_role_path_exists_in_the_base_config():
  config = configs.load("synthetic")
  for path in stages.FIELDS.student_side + stages.FIELDS.run_only + stages.FIELDS.losses + stages.FIELDS.arrays \
      + checkpoint.RESUME_IGNORED_FIELDS:
    if path in stages.FIELDS.optional:
      continue
    node = config
    for key in path.split("."):
      assert key in node, path
      node = node[key]


@pytest.mark.parametrize("method", losses.available())
def test_loss_arguments_follow_the_signature_and_admit_the_defaults(method):
  parameters = inspect.signature(losses.spec(method).fn).parameters
  accepted = schema.loss_arguments(method)
  expected = [n for n, p in parameters.items() if p.kind == p.KEYWORD_ONLY and n not in ("axis_name", "return_aux")]
  assert list(accepted) == expected
  for name, check in accepted.items():
    assert check(parameters[name].default) is None, (method, name)


def _with(spec="synthetic:smoke", **fields):
  config = configs.load(spec)
  with config.unlocked():
    for path, value in fields.items():
      *parents, leaf = path.split("__")
      node = config
      for key in parents:
        node = node[key]
      if leaf in node:
        del node[leaf]  # any type: the schema, not ConfigDict's type lock, is under test
      node[leaf] = value
  return config


@pytest.mark.parametrize("fields,message", [
    ({"optimizer__momentum": 1.0}, "config.optimizer.momentum=1.0: must be < 1.0"),
    ({"data__crop": (8,)}, "config.data.crop=(8,): must have 0 or 2 items"),
    ({"seeds": ()}, "config.seeds=(): must have 1 or more items"),
    ({"progress": "yes"}, "config.progress='yes': must be True or False"),
    ({"eval_batch_size": 2.5}, "config.eval_batch_size=2.5: must be an integer"),
    ({"distill__method": "pkt", "distill__kwargs": {"reduction": "avg"}}, "config.distill.kwargs.reduction='avg'"),
    ({"distill__method": "none", "distill__kwargs": {"k": 3}}, "config.distill.method is 'none'"),
    ({"distill__method_kwargs": {"nosuch": {}}}, "config.distill.method_kwargs.nosuch: no registered loss"),
    ({"distill__method_kwargs": {"pkdot": {"k": 4.0}}}, "config.distill.method_kwargs.pkdot.k=4.0: must be an integer"),
    ({"distill__method_kwargs": {}}, "config.distill.method_kwargs.pkdot.k=30 (unset"),
    ({"distill__extra": ({"method": "pkt", "weight": -1.0},)}, "config.distill.extra[0].weight=-1.0"),
    ({"distill__extra": ({"method": "pkt", "wieght": 1.0},)}, "config.distill.extra[0]: a term is"),
])
def test_bad_values_name_their_field(fields, message):
  with pytest.raises(schema.ConfigError) as info:
    schema.validate(_with(**fields))
  assert message in str(info.value)


def test_k_against_the_batch_size_and_anchors_all():
  schema.validate(_with(batch_size=5))  # smoke: k = 4 < 5
  with pytest.raises(schema.ConfigError, match="k=4: PKDOT needs k < the batch size"):
    schema.validate(_with(batch_size=4))
  schema.validate(_with(batch_size=4, distill__kwargs={"anchors": "all"}))  # k is not used


def test_switching_the_method_drops_pkdot_s_arguments():
  from pkdot_jax.train import steps
  config = _with(distill__method="pkt")
  schema.validate(config)
  assert steps.distill_branch(config.distill)["kwargs"] == {}
  assert steps.distill_branch(_with().distill)["kwargs"] == {"k": 4, "epsilon": 0.01, "max_iterations": 200}
