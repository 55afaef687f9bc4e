"""The stages of the pipeline, declared once, and the config fields that matter to each part of a run.

A `Stage` says everything the trainer needs to know about one stage: which model it trains and which frozen
model it reads, its loss, the config fields its programs read, the sub-trees it starts from earlier stages
(grafts), how it picks its best epoch, how it is evaluated, whether it distils (the loss branches, one member
per distillation weight, the teacher cache) and whether it belongs to the teacher side (shared by every
student of a sweep). The trainer reads nothing else about stages and never tests a stage's name; adding a stage
is one entry appended to `STAGES` (the position of a stage in the table picks its initialisation key and orders
its records).

The roles of the config's fields (`FIELDS`, derived from `schema.FIELDS`, where they are declared): which ones
only the student side reads (a shared teacher directory ignores them), and which ones reach a compiled program
only as data or as a branch index (runs differing only in them share one compiled program). The sweep's
grouping and the teacher key derive from these sets; a compiled program reads the fields its stage names in
`Stage.program_fields` (`programs.ProgramSpec`).
"""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Callable, Mapping

import jax.numpy as jnp

from pkdot_jax import errors, models
from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import schema, steps


# --------------------------------------------------------------------------------------------------- fields
@dataclasses.dataclass(frozen=True)
class Fields:
  """Dotted config paths, grouped by who reads them; derived from the roles declared in `schema.FIELDS`.

  student_side: fields the teacher-side stages never read (a teacher shared by several runs ignores them).
  run_only: fields that change neither training nor programs (paths, logging, which stages run).
  losses: fields that select the distillation loss (a branch of a shared student program).
  arrays: values that reach a program only as arrays or data (weights, seeds, the fold).
  optional: fields without a default; absent means empty (configs that leave them out equal the configs saved
    before they existed, so older workdirs resume). `distill.extra`: further losses added to the student loss,
    each {"method", "weight", "kwargs"} with a fixed weight (e.g. PKDOT + generalized distillation).
  """
  student_side: tuple[str, ...] = schema.paths(schema.STUDENT)
  run_only: tuple[str, ...] = schema.paths(schema.HOST)
  losses: tuple[str, ...] = schema.paths(schema.LOSS)
  arrays: tuple[str, ...] = schema.paths(schema.ARRAY)
  optional: tuple[str, ...] = schema.paths(schema.OPTIONAL)

  @property
  def teacher_neutral(self) -> tuple[str, ...]:
    """Fields a teacher-side directory does not compare (student runs sharing a teacher differ in them)."""
    return self.student_side + self.run_only

  @property
  def program_neutral(self) -> tuple[str, ...]:
    """Fields that runs sharing one compiled student program may differ in."""
    return self.losses + self.arrays + ("teacher_workdir",)


FIELDS = Fields()


def program_group(config) -> str:
  """Runs with equal groups may share one compiled student program (their losses become its branches)."""
  return json.dumps(ckpt_lib.drop_fields(ckpt_lib.config_to_dict(config), FIELDS.program_neutral), sort_keys=True)


# --------------------------------------------------------------------------------------------------- stages
@dataclasses.dataclass(frozen=True)
class Graft:
  """Sub-trees `names` of a stage's model initialised from the saved variables of the earlier stage `source`.

  `into`: the saved variables become the sub-tree of that name (the T-Net's own variables into the student's
  "tnet"); `optional`: grafted only when the earlier stage ran (unimodal pretraining)."""
  source: str
  names: tuple[str, ...]
  into: str | None = None
  optional: bool = False


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of the pipeline.

  models: `config -> (trained model, frozen model or None)`.
  loss: `(config, model, frozen model, distillation branches) -> loss fn` (`steps.LossFn`).
  program_fields: the dotted config paths that `models`, `loss` and `evaluate` read. Their programs are built
    from a `programs.ProgramSpec` holding these fields alone: a field they read but do not name here is an
    error at build time, never a stale program reused.
  grafts: `config -> tuple[Graft]`. frozen_modules: `config -> names` kept as initialised (zero updates).
  frozen_from: the earlier stage whose saved variables are the frozen model (state.frozen["teacher"]).
  select: `config -> (validation metric, "max" | "min")`.
  evaluate: `(config, model, frozen model) -> fn(variables, frozen, batch) -> outputs` (one evaluation program
    per stage, program fields and member layout).
  teacher_side: runs in the (possibly shared) teacher workdir.
  distills: trains with the distillation losses: its loss compiles the run's branches
    (`Programs.student_losses`), it has one member per (seed, distillation weight), and the distillation
    fields of the config are checked for it.
  caches_teacher: with `config.cache_teacher`, the frozen model's outputs are computed once per example and
    read from batch fields (`evaluation.teacher_cache`).
  init_from_teacher_visual: the model's input is the frozen teacher's visual embedding (the T-Net).
  """
  name: str
  models: Callable
  loss: Callable
  select: Callable
  evaluate: Callable
  teacher_side: bool
  program_fields: tuple[str, ...] = ("model",)
  frozen_from: str | None = None
  distills: bool = False
  caches_teacher: bool = False
  grafts: Callable = lambda config: ()
  frozen_modules: Callable = lambda config: ()
  init_from_teacher_visual: bool = False

  @property
  def reads_teacher(self) -> bool:
    """The frozen model's variables are an input of the stage's programs."""
    return self.frozen_from is not None


def _default_select(config) -> tuple[str, str]:
  default = "accuracy" if config.model.task == "classification" else "ccc_mean"
  return config.get("select_metric", default) or default, "max"


def _model_eval(config, model, teacher):
  del config, teacher

  def fn(variables, frozen, batch):
    del frozen
    return steps.eval_outputs(model.apply(variables, batch, train=False))
  return fn


def _tnet_eval(config, model, teacher):
  del config

  def fn(variables, frozen, batch):
    t_out = teacher.apply(frozen["teacher"], batch, train=False)
    predicted = model.apply(variables, t_out.visual.astype(jnp.float32)).astype(jnp.float32)
    return {"squared_error": jnp.mean((predicted - t_out.privileged.astype(jnp.float32)) ** 2, axis=-1)}
  return fn


def _pretrain(name: str, modality: Callable) -> Stage:
  return Stage(
      name=name, teacher_side=True, select=_default_select, evaluate=_model_eval,
      models=lambda config: (models.build_unimodal(config.model, modality(config.model)), None),
      loss=lambda config, model, teacher, losses: steps.supervised_loss(model, config.model.task))


STUDENT_BACKBONES = schema.STUDENT_BACKBONES


def frozen_student_backbone(config) -> bool:
  """`config.student_backbone`: "finetune" (default: the student's visual backbone starts from the teacher's,
  `student_init_from_teacher`, and trains) or "frozen_from_video" (the authors' regime: it is the visual-only
  model's (stage pretrain_video), frozen; the fusion and head, or the video-only projection and head, train)."""
  return config.student_backbone == "frozen_from_video"


def _student_grafts(config) -> tuple[Graft, ...]:
  names = tuple(config.student_init_from_teacher)
  grafts: tuple[Graft, ...] = ()
  if frozen_student_backbone(config):
    names = tuple(name for name in names if name != "visual_backbone")
    grafts = (Graft("pretrain_video", ("visual_backbone",)),)
  grafts = (Graft("teacher", names),) + grafts
  if config.model.student.mode == "tnet_fusion":
    grafts += (Graft("tnet", ("tnet",), into="tnet"),)
  return grafts


def _student_frozen_modules(config) -> tuple[str, ...]:
  frozen = ("visual_backbone",) if frozen_student_backbone(config) else ()
  return frozen + (("tnet",) if config.model.student.mode == "tnet_fusion" else ())


STAGES: Mapping[str, Stage] = types.MappingProxyType({stage.name: stage for stage in (
    _pretrain("pretrain_video", lambda mcfg: "video"),
    _pretrain("pretrain_privileged", lambda mcfg: mcfg.privileged),
    Stage(name="teacher", teacher_side=True, select=_default_select, evaluate=_model_eval,
          models=lambda config: (models.build_teacher(config.model), None),
          loss=lambda config, model, teacher, losses: steps.supervised_loss(
              model, config.model.task, mt_heads=bool(config.model.multitask)),
          grafts=lambda config: (Graft("pretrain_video", ("visual_backbone",), optional=True),
                                 Graft("pretrain_privileged", ("privileged_backbone",), optional=True))),
    Stage(name="tnet", teacher_side=True, frozen_from="teacher", evaluate=_tnet_eval,
          program_fields=("model", "tnet.objective"),
          select=lambda config: ("tnet_mse", "min"), init_from_teacher_visual=True,
          models=lambda config: (models.build_tnet(config.model), models.build_teacher(config.model)),
          loss=lambda config, model, teacher, losses: steps.tnet_loss(model, teacher, config.tnet.objective)),
    Stage(name="student", teacher_side=False, frozen_from="teacher", evaluate=_model_eval,
          program_fields=("model", "student_backbone"), distills=True, caches_teacher=True,
          select=_default_select, grafts=_student_grafts,
          frozen_modules=_student_frozen_modules,
          models=lambda config: (models.build_student(config.model, freeze_backbone=frozen_student_backbone(config)),
                                 models.build_teacher(config.model)),
          loss=lambda config, model, teacher, losses: steps.student_loss(
              model, teacher, config.model.task, {"branches": losses})),
)})  # read-only
STAGE_ORDER = tuple(STAGES)
TEACHER_STAGES = tuple(name for name, stage in STAGES.items() if stage.teacher_side)


def get(name: str) -> Stage:
  if name not in STAGES:
    raise errors.ConfigError(f"unknown stage {name!r}; stages are {', '.join(STAGE_ORDER)}")
  return STAGES[name]
