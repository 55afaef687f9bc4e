"""The config schema: every field of an experiment config declared once, with its default, its role and its
constraint.

Why one table: a field's default, who reads it and which values it admits used to live in several places (the
base config, the field sets of `stages.py`, the resume check of `checkpoint.py`, `config.get(...)` fallbacks in
the trainer), and a bad value was found only when the code reading it ran, sometimes after hours of training.
Here `configs.common.base_config()` builds its fields from `defaults()`, `stages.FIELDS` and
`checkpoint.RESUME_IGNORED_FIELDS` come from `paths(role)`, and `validate(config)` (called by `loop.check_run`
before anything is written) checks every value, including the keyword arguments of every distillation loss
against the registered loss's signature. A failed check raises `ConfigError` naming the field.

Roles (a field has any of them; a role declared on a group covers its fields):
  STUDENT   only the student side reads it (a teacher directory shared by several runs ignores it)
  HOST      the host loop only (paths, logging, which stages run): changes neither training nor programs
  LOSS      selects the distillation loss (a branch of a shared student program)
  ARRAY     reaches a program only as an array (weights, seeds, the fold)
  OPTIONAL  has no default in the base config: absent means the default
  RESUMABLE may change between a run and its resume
Fields with neither HOST, LOSS nor ARRAY shape the compiled programs. The `model` group is checked by the model
builders (`models.factory`), which `check_run` calls with the config.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from typing import Any, Callable, Mapping

import ml_collections

from pkdot_jax import errors, losses

STUDENT_BACKBONES = ("finetune", "frozen_from_video")  # config.student_backbone
STUDENT, HOST, LOSS, ARRAY, OPTIONAL, RESUMABLE = "student", "host", "loss", "array", "optional", "resumable"
Check = Callable[[Any], "str | None"]  # the problem with a value, or None
_NO_DEFAULT = object()


ConfigError = errors.ConfigError  # a config value outside its field's constraints, named first


@dataclasses.dataclass(frozen=True)
class Field:
  """One dotted config path (`*` matches any one key, e.g. every stage) or a group of fields (`group=True`)."""
  path: str
  default: Any = _NO_DEFAULT
  check: Check | None = None
  roles: tuple[str, ...] = ()
  doc: str = ""
  group: bool = False


# ------------------------------------------------------------------------------------------------- checks
def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def integer(low: int | None = None, high: int | None = None) -> Check:
  def check(value):
    if not _is_int(value):
      return f"must be an integer, got {value!r}"
    if (low is not None and value < low) or (high is not None and value > high):
      bounds = f">= {low}" if high is None else f"in [{low}, {high}]" if low is not None else f"<= {high}"
      return f"must be {bounds}, got {value}"
    return None
  return check


def number(low: float | None = None, *, above: float | None = None, below: float | None = None,
           high: float | None = None) -> Check:
  """A finite number, `>= low`, `> above`, `< below`, `<= high`."""
  def check(value):
    if not _is_number(value):
      return f"must be a finite number, got {value!r}"
    if low is not None and value < low:
      return f"must be >= {low}, got {value}"
    if high is not None and value > high:
      return f"must be <= {high}, got {value}"
    if above is not None and value <= above:
      return f"must be > {above}, got {value}"
    if below is not None and value >= below:
      return f"must be < {below}, got {value}"
    return None
  return check


def choice(*options: Any) -> Check:
  def check(value):
    return None if value in options else f"must be one of {', '.join(map(repr, options))}, got {value!r}"
  return check


def of_type(kind: type | tuple[type, ...], what: str) -> Check:
  def check(value):
    return None if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)) \
        else f"must be {what}, got {value!r}"
  return check


def sequence(item: Check, *, min_len: int = 0, lengths: tuple[int, ...] | None = None) -> Check:
  """A tuple or list whose items pass `item`; `lengths`: the admitted lengths."""
  def check(value):
    if not isinstance(value, (tuple, list)):
      return f"must be a tuple, got {value!r}"
    if len(value) < min_len:
      return f"must have {min_len} or more items, got {tuple(value)}"
    if lengths is not None and len(value) not in lengths:
      return f"must have {' or '.join(map(str, lengths))} items, got {tuple(value)}"
    for i, v in enumerate(value):
      problem = item(v)
      if problem:
        return f"item {i} {problem}"
    return None
  return check


def number_or_sequence(item: Check) -> Check:
  """One value or a non-empty tuple of values (one member per value)."""
  many = sequence(item, min_len=1)

  def check(value):
    return many(value) if isinstance(value, (tuple, list)) else item(value)
  return check


def optional_int(low: int) -> Check:
  inner = integer(low)

  def check(value):
    return None if value is None else inner(value)
  return check


BOOL, STR = of_type(bool, "True or False"), of_type(str, "a string")
MAPPING = of_type((dict, ml_collections.ConfigDict), "a group of fields")
FRACTION = number(0.0, below=1.0)
OPTIMIZER_NAMES, SCHEDULES, TNET_OBJECTIVES = ("adam", "sgd"), ("constant", "cosine"), ("mse", "mmd", "mse+mmd")
PROTOCOLS = ("subject", "authors", "official")

# ---------------------------------------------------------------------------------------------- the fields
_OPTIMIZER = (
    Field("optimizer.name", "adam", choice(*OPTIMIZER_NAMES), doc="momentum below applies to sgd"),
    Field("optimizer.momentum", 0.9, number(0.0, below=1.0)),
    Field("optimizer.learning_rate", 1e-3, number(above=0.0)),
    Field("optimizer.schedule", "constant", choice(*SCHEDULES)),
    Field("optimizer.warmup_steps", 0, integer(0)),
    Field("optimizer.weight_decay", 0.0, number(0.0)),
    Field("optimizer.grad_clip", 0.0, number(0.0), doc="global-norm clipping; 0: off"),
)
_OPTIMIZER_CHECKS = {f.path.split(".")[-1]: f.check for f in _OPTIMIZER}


def _stage_optimizer(value: Any) -> str | None:
  """Per-stage optimizer overrides: fields of config.optimizer, each under its own constraint."""
  problem = MAPPING(value)
  if problem:
    return problem
  for key, item in dict(value).items():
    if key not in _OPTIMIZER_CHECKS:
      return f"has {key!r}, not a field of config.optimizer ({', '.join(_OPTIMIZER_CHECKS)})"
    problem = _OPTIMIZER_CHECKS[key](item)  # type: ignore[misc]
    if problem:
      return f"{key} {problem}"
  return None


FIELDS: tuple[Field, ...] = (
    Field("seeds", (0,), sequence(integer(0), min_len=1), (ARRAY,), "members trained side by side (vmapped)"),
    Field("pipeline", ("teacher", "tnet", "student"), sequence(STR, min_len=1), (HOST,)),
    Field("batch_size", 32, integer(1), doc="global batch, split over all devices"),
    Field("eval_batch_size", 64, integer(1)),
    Field("num_devices", None, optional_int(1), doc="None: all devices"),
    Field("log_every", 10, integer(1), (HOST, RESUMABLE)),
    Field("progress", True, BOOL, (HOST, RESUMABLE)),
    Field("cache_teacher", False, BOOL, (STUDENT,),
          "student stage: teacher outputs computed once (deterministic inputs only)"),
    Field("select_metric", "", STR, (STUDENT,), '"" -> accuracy (classification) / ccc_mean (regression)'),
    Field("test_every_epoch", True, BOOL, doc="False: the test split is scored once, with the selected variables"),
    Field("teacher_workdir", "", STR, (HOST,), '"": teacher and T-Net stages in the run\'s own workdir'),
    Field("data.name", "pkdot_synthetic", STR, doc="a dataset of pkdot_jax.data (checked by train/input.py)"),
    Field("data.config_name", "binary", STR),
    Field("data.data_dir", "~/tensorflow_datasets", STR),
    Field("data.manual_dir", "", STR),
    Field("data.dataset_seed", 0, integer(0)),
    Field("data.overrides", {}, MAPPING, doc="builder config fields (subjects, clips, frames, ...)"),
    Field("data.protocol", "subject", choice(*PROTOCOLS),
          doc='subject-disjoint folds; "authors" = their clip-level (leaky) folds; "official" split'),
    Field("data.num_folds", 5, integer(2)),
    Field("data.fold", 0, integer(0), (ARRAY,), "below data.num_folds (checked by train/input.py)"),
    Field("data.fold_seed", 0, integer(0)),
    Field("data.val_fraction", 0.2, FRACTION, doc="of the training subjects (or videos) held out for selection"),
    Field("data.augment", False, BOOL, doc="TSN frame sampling, random crop, flip (training only)"),
    Field("data.num_frames", 0, integer(0), doc="0: keep the stored frames"),
    Field("data.size", (), sequence(integer(1), lengths=(0, 2)), doc="resize (H, W); () keeps the stored size"),
    Field("data.crop", (), sequence(integer(1), lengths=(0, 2)), doc="crop (H, W) after resizing"),
    Field("data.worker_count", 0, integer(0)),
    Field("data.in_memory", False, BOOL, doc="decode every record once per process and keep it (small sets)"),
    Field("data.select_on_test", False, BOOL, (OPTIONAL,), "the authors' selection on the test split"),
    Field("model", group=True, doc="models.default_config(); checked by the model builders"),
    Field("model.student", group=True, roles=(STUDENT,)),
    *_OPTIMIZER,
    Field("stages.*.num_epochs", 5, integer(1)),
    Field("stages.*.optimizer", {}, _stage_optimizer, doc="fields of config.optimizer for this stage only"),
    Field("stages.student", group=True, roles=(STUDENT,)),
    Field("tnet.objective", "mse", choice(*TNET_OBJECTIVES)),
    Field("student_init_from_teacher", ("visual_backbone",), sequence(STR), (STUDENT,),
          "student sub-trees initialised from the trained teacher"),
    Field("student_backbone", "finetune", choice(*STUDENT_BACKBONES), (STUDENT,),
          '"frozen_from_video": the authors\' student, its visual backbone the pretrain_video model\'s, frozen'),
    Field("distill", group=True, roles=(STUDENT,)),
    Field("distill.method", "pkdot", STR, (LOSS,), 'a name of pkdot_jax.losses.available(), or "none"'),
    Field("distill.weight", 0.6, number_or_sequence(number(0.0)), (ARRAY,),
          "lambda; a tuple trains one member per value (vmapped)"),
    Field("distill.task_weight", 1.0, number(0.0), (ARRAY,)),
    Field("distill.mt_pkdot", False, BOOL, (LOSS,)),
    Field("distill.kwargs", {}, MAPPING, (LOSS,),
          "arguments of distill.method for this run (sweeps, method presets); over distill.method_kwargs"),
    Field("distill.method_kwargs", {"pkdot": {"k": 30, "epsilon": 0.01}}, MAPPING, (LOSS,),
          "per method, this experiment's arguments of that loss (e.g. PKDOT's k for its batch size)"),
    Field("distill.extra", (), sequence(MAPPING), (LOSS, OPTIONAL),
          'further losses added to the student loss, each {"method", "weight", "kwargs"} with a fixed weight'),
    Field("checkpoint.every_steps", 0, integer(0), doc="0: at the end of every epoch only"),
    Field("checkpoint.max_to_keep", 2, integer(1)),
    Field("checkpoint.min_interval_secs", 0.0, number(0.0),
          doc="skip periodic checkpoints taken sooner than this after the last"),
)


def paths(role: str) -> tuple[str, ...]:
  """The declared paths (fields or groups) that carry `role`, in declaration order."""
  return tuple(f.path for f in FIELDS if role in f.roles)


def defaults(stage_names: tuple[str, ...]) -> ml_collections.ConfigDict:
  """The fields with a default (optional ones left out), as a ConfigDict; `*` expands to `stage_names`."""
  config = ml_collections.ConfigDict()
  for f in FIELDS:
    if f.group or OPTIONAL in f.roles:
      continue
    for path in _expand(f.path, stage_names):
      *parents, leaf = path.split(".")
      node = config
      for key in parents:
        if key not in node:
          node[key] = ml_collections.ConfigDict()
        node = node[key]
      default = f.default
      if f.path == "num_devices":
        node[leaf] = ml_collections.config_dict.placeholder(int)
      else:
        node[leaf] = ml_collections.ConfigDict(default) if isinstance(default, dict) else default
  return config


def _expand(path: str, keys: tuple[str, ...]) -> list[str]:
  return [path.replace("*", key) for key in keys] if "*" in path else [path]


# ---------------------------------------------------------------------------------------------- validation
def validate(config) -> None:
  """Checks every declared field of `config` and every loss's keyword arguments; refuses undeclared fields.

  Raises ConfigError naming the first field at fault (`config.optimizer.learning_rate=-0.001: must be > 0.0`)."""
  stage_names = tuple(config.stages.keys()) if "stages" in config else ()
  declared = set()
  for f in FIELDS:
    if f.group:
      continue
    for path in _expand(f.path, stage_names):
      declared.add(path)
      found, value = _lookup(config, path)
      if not found:
        if OPTIONAL in f.roles or ("*" in f.path and f.path.endswith(".optimizer")):
          continue
        raise ConfigError(f"config.{path} is missing (a config starts from configs.common.base_config())")
      problem = f.check(value) if f.check is not None else None
      if problem:
        raise ConfigError(f"config.{path}={_show(value)}: {problem}")
  _refuse_undeclared(config, "", declared)
  check_loss_arguments(config)


def _lookup(config, path: str) -> tuple[bool, Any]:
  node = config
  for key in path.split("."):
    if not hasattr(node, "keys") or key not in node.keys():
      return False, None
    node = node[key]
  return True, node


def _show(value: Any) -> str:
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  return repr(value)


def _refuse_undeclared(node, prefix: str, declared: set[str]) -> None:
  """Every field of the config is a declared field, inside one (a group of values), or in the `model` group."""
  for key in node.keys():
    path = prefix + key
    if path in declared or path == "model":
      continue
    child = node[key]
    if hasattr(child, "keys") and any(d.startswith(path + ".") for d in declared):
      _refuse_undeclared(child, path + ".", declared)
      continue
    raise ConfigError(f"config.{path} is not a field of the config schema (pkdot_jax/train/schema.py); a typo?")


# Arguments the trainer passes itself, never a config.
_TRAINER_ARGS = ("student", "teacher", "labels", "axis_name", "return_aux")
# Constraints beyond the type of an argument's default: (method or "*", argument) -> check.
_LOSS_ARG_CHECKS: Mapping[tuple[str, str], Check] = {
    ("pkdot", "k"): integer(1), ("pkdot", "epsilon"): number(above=0.0), ("pkdot", "threshold"): number(above=0.0),
    ("pkdot", "max_iterations"): integer(1), ("*", "temperature"): number(above=0.0),
    ("generalized_distillation", "imitation"): number(0.0, high=1.0), ("dkd", "alpha"): number(0.0),
    ("dkd", "beta"): number(0.0), ("rkd", "distance_weight"): number(0.0), ("rkd", "angle_weight"): number(0.0),
    ("cc", "gamma"): number(above=0.0), ("cc", "order"): integer(1), ("mmd", "kernel_mul"): number(above=0.0),
    ("mmd", "kernel_num"): integer(1), ("nst", "degree"): integer(1),
    ("mmd", "bandwidths"): lambda v: None if v is None else sequence(number(above=0.0), min_len=1)(v),
}


def loss_arguments(method: str) -> dict[str, Check]:
  """The keyword arguments a config may give the registered loss `method`, each with its check (the type of
  its default, its `Literal` choices, and the constraints above)."""
  fn = losses.spec(method).fn
  try:
    hints = typing.get_type_hints(fn)
  except Exception:  # pylint: disable=broad-except  (an annotation that does not resolve: types from defaults)
    hints = {}
  checks: dict[str, Check] = {}
  for name, param in inspect.signature(fn).parameters.items():
    if name in _TRAINER_ARGS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
      continue
    checks[name] = _LOSS_ARG_CHECKS.get((method, name)) or _LOSS_ARG_CHECKS.get(("*", name)) \
        or _from_annotation(hints.get(name), param.default)
  return checks


def _from_annotation(hint: Any, default: Any) -> Check:
  if typing.get_origin(hint) is typing.Literal:
    return choice(*typing.get_args(hint))
  if isinstance(default, bool):
    return BOOL
  if isinstance(default, int):
    return integer()
  if isinstance(default, float):
    return number()
  if isinstance(default, str):
    return STR
  return lambda value: None  # None defaults (solver options): the loss checks them


def check_loss_arguments(config) -> None:
  """distill.kwargs against distill.method, every distill.method_kwargs entry against its method, every
  distill.extra term against its own; pkdot's k against the batch size."""
  distill = config.distill
  for method, args in dict(distill.method_kwargs).items():
    if method not in losses.available():
      raise ConfigError(f"config.distill.method_kwargs.{method}: no registered loss {method!r} "
                        f"(losses: {', '.join(losses.available())})")
    _check_args(method, dict(args), f"config.distill.method_kwargs.{method}", config.batch_size)
  method = distill.method
  if method == "none" and len(distill.kwargs):
    raise ConfigError(f"config.distill.kwargs={_show(distill.kwargs)}: config.distill.method is 'none', which "
                      f"takes no arguments")
  if method in losses.available():
    _check_args(method, dict(distill.kwargs), "config.distill.kwargs", config.batch_size)
    own = dict(distill.method_kwargs.get(method, {}))
    _check_batch(method, [(dict(distill.kwargs), "config.distill.kwargs"),
                          (own, f"config.distill.method_kwargs.{method}")], config.batch_size)
  for i, term in enumerate(distill.get("extra", ()) or ()):
    where = f"config.distill.extra[{i}]"
    unknown = sorted(set(term.keys()) - {"method", "weight", "kwargs"})
    if unknown or "method" not in term:
      raise ConfigError(f"{where}: a term is {{'method', 'weight', 'kwargs'}}, got fields {sorted(term.keys())}")
    problem = number(0.0)(term.get("weight", 1.0))
    if problem:
      raise ConfigError(f"{where}.weight={term.get('weight')!r}: {problem}")
    if term["method"] in losses.available():
      args = dict(term.get("kwargs") or {})
      _check_args(term["method"], args, f"{where}.kwargs", config.batch_size)
      _check_batch(term["method"], [(args, f"{where}.kwargs")], config.batch_size)


def _check_args(method: str, args: dict[str, Any], where: str, batch_size: int) -> None:
  accepted = loss_arguments(method)
  for name, value in args.items():
    if name not in accepted:
      raise ConfigError(f"{where}.{name}: loss {method!r} takes no argument {name!r}; its arguments: "
                        f"{', '.join(accepted) or 'none'}")
    problem = accepted[name](value)
    if problem:
      raise ConfigError(f"{where}.{name}={_show(value)}: {problem}")


def _check_batch(method: str, sources: list[tuple[dict[str, Any], str]], batch_size: int) -> None:
  """PKDOT's k anchors per sample come from the others of its batch: k < batch size (first source wins)."""
  if method != "pkdot" or not _is_int(batch_size):
    return
  parameters = inspect.signature(losses.spec(method).fn).parameters
  effective = {name: p.default for name, p in parameters.items()}
  for args, _ in reversed(sources):
    effective.update(args)
  if effective["anchors"] == "all" or effective["k"] < batch_size:
    return
  where = next((f"{w}.k={effective['k']}" for args, w in sources if "k" in args),
               f"config.distill.method_kwargs.{method}.k={effective['k']} (unset: the loss's default)")
  raise ConfigError(f"{where}: PKDOT needs k < the batch size (config.batch_size={batch_size}): "
                    f"k anchors per sample among the others of its batch")
