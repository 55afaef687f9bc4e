"""One stage of one run, set up: its config with the stage's optimizer, mesh, members, data, and the
programs and teacher cache that follow from them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pkdot_jax import errors
from pkdot_jax.train import evaluation, parallel, records, steps
from pkdot_jax.train import input as input_lib
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train.members import Members
from pkdot_jax.train.programs import Context, ProgramSpec, build_train_step


@dataclasses.dataclass
class Run:
  """One stage of one run: what every step of `loop.run_stage` reads."""
  stage: stages_lib.Stage
  config: Any
  opt_config: Any  # config.optimizer with the stage's overrides, total_steps and frozen modules
  workdir: str
  teacher_dir: str
  mesh: Any
  members: Members
  data: input_lib.Data
  context: Context
  steps_per_epoch: int

  @property
  def total_steps(self) -> int:
    return int(self.config.stages[self.stage.name].num_epochs) * self.steps_per_epoch

  @property
  def stage_dir(self) -> str:
    return records.stage_dir(self.workdir, self.stage.name)

  @property
  def log_path(self) -> str:
    return records.metrics_path(self.workdir)

  def saved(self, stage_name: str) -> str:
    return records.best_dir(self.teacher_dir, stage_name)

  def per_member(self, tree: Any) -> Any:
    """Saved teacher-side variables (one member per seed) arranged as this run's members."""
    return self.members.arrange(tree, tuple(int(s) for s in self.config.seeds))


def stage_optimizer(config, stage: stages_lib.Stage, total_steps: int):
  """A copy of `config` whose `optimizer` has the stage's overrides, `total_steps` and frozen modules."""
  opt_config = config.copy_and_resolve_references()
  with opt_config.unlocked():
    # Per-stage optimizer overrides, e.g. --config.stages.student.optimizer.learning_rate=1e-4.
    for key, value in config.stages[stage.name].get("optimizer", {}).items():
      opt_config.optimizer[key] = value
    opt_config.optimizer.total_steps = total_steps
    if stage.frozen_modules(config):
      opt_config.optimizer.frozen_modules = tuple(stage.frozen_modules(config))
  return opt_config


def setup(stage_name: str, config, workdir: str, teacher_dir: str, mesh, context: Context) -> Run:
  """The stage's run: its data loaded, the global batch checked against the mesh, its optimizer config."""
  stage = stages_lib.get(stage_name)
  mesh = mesh or parallel.make_mesh(config.num_devices)
  data = input_lib.load(config, context.datasets)
  parallel.check_global_batch(config.batch_size, mesh)
  steps_per_epoch = len(data.train) // config.batch_size
  if steps_per_epoch == 0:
    raise errors.ConfigError(f"{stage_name}: the training split has {len(data.train)} examples, fewer than one "
                             f"batch of {config.batch_size}")
  opt_config = stage_optimizer(config, stage, int(config.stages[stage_name].num_epochs) * steps_per_epoch)
  return Run(stage=stage, config=config, opt_config=opt_config, workdir=workdir, teacher_dir=teacher_dir,
             mesh=mesh, members=Members.from_config(config, stage_name), data=data, context=context,
             steps_per_epoch=steps_per_epoch)


def loss_branches(run: Run) -> tuple[list[dict[str, Any]], int]:
  """The distillation losses compiled into the stage's train step and the index of the run's own (none for a
  stage that does not distil)."""
  if not run.stage.distills:
    return [], 0
  return run.context.programs.student_losses(run.config)


def train_step(run: Run) -> Callable:
  """The stage's jitted, donated train step, built once per spec (stage fields, losses, optimizer, mesh,
  members)."""
  spec = ProgramSpec.of("train_step", run.stage.name, run.config, opt_config=run.opt_config,
                        losses=loss_branches(run)[0], mesh=run.mesh, vmapped=run.members.vmapped)
  return run.context.programs.get(spec, build_train_step)


def teacher_cache(run: Run) -> evaluation.TeacherCache | None:
  """The frozen model's outputs computed once per example (`Stage.caches_teacher`, `config.cache_teacher`,
  deterministic inputs), or None."""
  config, losses = run.config, loss_branches(run)[0]
  # A program that holds a distillation loss reads the teacher even in a run whose own loss is "none" (the
  # task-only control sharing it): the cache spares that run the teacher forward too.
  if not run.stage.caches_teacher or run.stage.frozen_from is None \
      or not any(steps.branch_methods(b) for b in losses) or not config.cache_teacher:
    return None
  need_heads = any(b["mt_pkdot"] for b in losses)
  teacher = run.per_member(run.context.saved.load(run.saved(run.stage.frozen_from)))
  return evaluation.teacher_cache(teacher, run.data, config, run.mesh, run.members.vmapped, need_heads,
                                  run.context.programs, run.stage.frozen_from)
