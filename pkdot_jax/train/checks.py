"""Everything checked before a run writes anything: the config's fields and losses, every stage's models and
optimizer, the earlier stages it reads, the pretrained weight files, the data and the saved configs.
"""

from __future__ import annotations

import os

from pkdot_jax import errors
from pkdot_jax import losses
from pkdot_jax.models import pretrained as pretrained_lib
from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import input as input_lib
from pkdot_jax.train import parallel, records, schema, steps
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train.initial import from_file
from pkdot_jax.train.programs import Context
from pkdot_jax.train.runs import stage_optimizer
from pkdot_jax.train.state import make_optimizer


def _distils(stages: tuple[str, ...]) -> bool:
  return any(stages_lib.get(name).distills for name in stages)


def validate_config(config, stages: tuple[str, ...], context: Context | None = None) -> None:
  """Checks what can be checked before any data is read or program compiled; names the field at fault."""
  for stage in stages:
    stages_lib.get(stage)  # ValueError listing the stages
  schema.validate(config)  # every value within its field's constraints; every loss argument known to its loss
  for branch in (context or Context()).programs.student_losses(config)[0]:
    terms = [("config.distill.method", branch["method"])] * (branch["method"] != "none")
    terms += [(f"config.distill.extra[{i}].method", t["method"]) for i, t in enumerate(branch["extra"])]
    for field, name in terms:
      try:
        spec = losses.spec(name)  # ValueError listing the registered names on a typo
        spec.check(config.model.task)
      except ValueError as e:
        raise errors.ConfigError(f"{field}={name!r}: {e}") from None
      if spec.inputs not in ("embeddings", "logits"):
        raise errors.ConfigError(f"{field}={name!r} compares {spec.inputs}, which the trainer does not expose; choose "
                                 f"one of the embedding- or logit-based losses")
    if branch["mt_pkdot"] and not config.model.multitask:
      raise errors.ConfigError("config.distill.mt_pkdot needs a teacher with per-modality heads: set "
                               "config.model.multitask=True (before training the teacher)")
  own = steps.distill_branch(config.distill)
  if own["extra"] and own["method"] == "none":
    raise errors.ConfigError("config.distill.extra adds terms to a distillation loss, but config.distill.method is "
                             "'none': name the main loss in distill.method")
  if _distils(stages) and own["method"] != "none" and config.model.student.mode == "video_only" \
      and config.distill.mt_pkdot:
    raise errors.ConfigError("MT-PKDOT distils into the T-Net + fusion student, not the video_only one")


def _check_stage(name: str, config, workdir: str, teacher_dir: str, stages: tuple[str, ...],
                 context: Context) -> None:
  """One stage: its models and loss build, its optimizer, the earlier stages it reads but does not train, and
  the pretrained weight files it would start from."""
  stage = stages_lib.get(name)
  if name not in config.stages:
    raise errors.ConfigError(f"config.stages has no entry for stage {name!r} (has: {', '.join(config.stages.keys())})")
  model, frozen_model = stage.models(config)  # the model config checks (dtype, fusion, task, ...)
  stage.loss(config, model, frozen_model, context.programs.student_losses(config)[0])
  make_optimizer(stage_optimizer(config, stage, 1))
  needed = [g.source for g in stage.grafts(config) if not g.optional]
  needed += [stage.frozen_from] if stage.frozen_from else []
  for source in needed:
    if source not in stages and not os.path.exists(records.best_dir(teacher_dir, source)):
      raise errors.MissingError(f"stage {name!r} reads the trained {source!r} stage, but {teacher_dir} has no "
                                f"{source}/best: run it first (--stages={source},...) or include it in --stages")
    if source not in stages:
      ckpt_lib.verify_variables(records.best_dir(teacher_dir, source))  # a damaged file: named, nothing written
  if not os.path.exists(records.result_path(teacher_dir if stage.teacher_side else workdir, name)):
    earlier = stages[:stages.index(name)]  # a finished stage reads no weight file again
    grafted = [n for g in stage.grafts(config) for n in g.names if not g.optional or g.source in earlier
               or os.path.exists(records.best_dir(teacher_dir, g.source))]
    pretrained_lib.check(config.model, from_file(stage, config, grafted))


def check_run(config, workdir: str, stages: tuple[str, ...], context: Context | None = None) -> None:
  """Every check that can run before anything is written: the config (`validate_config`), the models' and
  optimizers' settings of every stage (building them allocates nothing), the mesh and batch, the earlier
  stages this run reads but does not train, and the configs saved in the workdir and teacher directory."""
  validate_config(config, stages, context)
  context = context or Context()
  teacher_dir = config.teacher_workdir or workdir
  for name in stages:
    _check_stage(name, config, workdir, teacher_dir, stages, context)
  parallel.check_global_batch(config.batch_size, parallel.make_mesh(config.num_devices))
  input_lib.check_data_config(config)
  caches = any(stages_lib.get(name).caches_teacher for name in stages)
  if caches and config.distill.method != "none" and config.cache_teacher and config.data.augment:
    raise errors.ConfigError("config.cache_teacher needs deterministic teacher inputs, but config.data.augment is on")
  ckpt_lib.check_or_write_config(workdir, config, write=False)
  if teacher_dir != workdir:
    ckpt_lib.check_or_write_config(teacher_dir, config, drop=stages_lib.FIELDS.teacher_neutral, write=False)
  for directory in {workdir, teacher_dir}:
    records.check_readable(directory, stages)
  _check_training_split(config, context)


def _check_training_split(config, context: Context) -> None:
  """The fold's training split holds at least one batch (reads the dataset's subjects; writes no workdir)."""
  data = input_lib.load(config, context.datasets)
  if len(data.train) < config.batch_size:
    raise schema.ConfigError(
        f"config.batch_size={config.batch_size}: larger than the training split of fold {config.data.fold} "
        f"({len(data.train)} examples with config.data.val_fraction={config.data.val_fraction}); use a smaller batch")
