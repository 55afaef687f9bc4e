"""The training loop: `run_stage` trains one stage (declared in `stages.py`) in a workdir; `run_pipeline` runs
the stages of a config in order.

Several *members* (seeds, or distillation weights) of one config train side by side (`parallel.over_members`:
one vmapped program on accelerators, the single-member program per member on CPUs): every array of the state
gets a leading member axis, every member reads its own data order. With one member nothing is vmapped. The
compiled programs, saved variables and in-memory data live in the caller's `programs.Context`, so the folds,
seeds and methods of a sweep trace and compile each program once. Runs are resumable: re-running the same
command restores the latest checkpoint, skips the batches already consumed in the current epoch (data order is
a function of seed and epoch, step keys of seed and step), and continues to the same final parameters as an
uninterrupted run.

Multi-process jobs run the same code in every process: every process reads its shard of each batch, joins
every step, evaluation and checkpoint (orbax writes each array once), and process 0 alone writes the JSON
files (config, run info, metrics, results).

Workdir layout (one run = one config = one fold):
  config.json, run_info.json        the config; versions, devices, git revision
  metrics.jsonl                     one record per stage and epoch (train loss and the mean of every step term,
                                    val and test metrics per member; test only in result.json when
                                    config.test_every_epoch is False)
  <stage>/tensorboard/              TensorBoard event files: per step loss terms, per epoch val / test (summaries.py)
  <stage>/checkpoints/              periodic checkpoints (resume points)
  <stage>/best/                     the members' variables at their best validation epoch (next stage's input)
  <stage>/checksums/                checksum manifests of the checkpoints and of best/, verified before a restore
  <stage>/result.json               written last: the stage is done and is skipped on re-runs (if best/ verifies)
The paths, the JSON records and the journal are `records.py`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax import console, errors, losses
from pkdot_jax.models import pretrained as pretrained_lib
from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import evaluation
from pkdot_jax.train import input as input_lib
from pkdot_jax.train import locks, parallel, preemption, records, runinfo, schema, steps
from pkdot_jax.train import watch as watch_lib
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train.programs import Context
from pkdot_jax.train.state import TrainState, learning_rate, make_optimizer

STAGES = stages_lib.STAGE_ORDER
TEACHER_STAGES = stages_lib.TEACHER_STAGES


class NonFiniteLossError(FloatingPointError):
  pass


@dataclasses.dataclass
class Members:
  """The runs trained together: one per (seed, distillation weight)."""
  seeds: tuple[int, ...]
  weights: tuple[float, ...]

  @classmethod
  def from_config(cls, config, stage_name: str = "student") -> "Members":
    """Teacher-side stages have one member per seed (the distillation weights are the student's)."""
    seeds = tuple(int(s) for s in config.seeds)
    weight = config.distill.weight
    weights = tuple(float(w) for w in (weight if isinstance(weight, (list, tuple)) else [weight]))
    if stage_name in TEACHER_STAGES:
      weights = weights[:1]
    pairs = [(s, w) for w in weights for s in seeds]
    return cls(seeds=tuple(p[0] for p in pairs), weights=tuple(p[1] for p in pairs))

  def __len__(self) -> int:
    return len(self.seeds)

  @property
  def vmapped(self) -> bool:
    return len(self) > 1

  def names(self) -> list[str]:
    return [f"seed{s}_w{w:g}" for s, w in zip(self.seeds, self.weights)]

  def arrange(self, tree: Any, seeds: tuple[int, ...]) -> Any:
    """An earlier teacher-side stage's variables (one member per seed of `seeds`, stacked when several)
    arranged as these members: each member of a student with several weights per seed reads its seed's."""
    if self.seeds == tuple(seeds):
      return tree
    parts = [jax.tree.map(lambda x, i=seeds.index(s): x[i], tree) if len(seeds) > 1 else tree for s in self.seeds]
    return parallel.stack_host(parts) if self.vmapped else parts[0]


def _is_writer() -> bool:
  """Process 0 writes the JSON files of a multi-process job (every process writes its part of checkpoints)."""
  return jax.process_index() == 0


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


@contextlib.contextmanager
def _claim(directory: str, what: str, wait: bool):
  """Claims `directory` for this job (`locks`): a process that finds it claimed by another job waits (`wait`)
  or raises locks.InUse naming the holder. In a multi-process job process 0 holds the claim for all and the
  others learn its outcome, so every process raises (or goes on) alike."""
  if jax.process_count() == 1:
    with locks.claim(directory, what, wait=wait):
      yield
    return
  from jax.experimental import multihost_utils
  error = None
  if _is_writer():
    try:
      locks.acquire(os.path.join(directory, locks.LOCK_FILE), what, wait=wait)
    except locks.InUse as e:
      error = e
  if int(multihost_utils.broadcast_one_to_all(np.int32(error is not None))):
    path = os.path.join(os.path.abspath(directory), locks.LOCK_FILE)
    raise error or locks.InUse(path, what, locks.read_holder(path))
  try:
    yield
  finally:
    if _is_writer():
      locks.release(os.path.join(directory, locks.LOCK_FILE))


# --------------------------------------------------------------------------------------------------- set-up
@dataclasses.dataclass
class _Run:
  """One stage of one run: what every step of `run_stage` reads."""
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


def _setup(stage_name: str, config, workdir: str, teacher_dir: str, mesh, context: Context) -> _Run:
  stage = stages_lib.get(stage_name)
  mesh = mesh or parallel.make_mesh(config.num_devices)
  data = input_lib.load(config, context.datasets)
  parallel.check_global_batch(config.batch_size, mesh)
  steps_per_epoch = len(data.train) // config.batch_size
  if steps_per_epoch == 0:
    raise errors.ConfigError(f"{stage_name}: the training split has {len(data.train)} examples, fewer than one "
                             f"batch of {config.batch_size}")
  opt_config = config.copy_and_resolve_references()
  with opt_config.unlocked():
    # Per-stage optimizer overrides, e.g. --config.stages.student.optimizer.learning_rate=1e-4.
    for key, value in config.stages[stage_name].get("optimizer", {}).items():
      opt_config.optimizer[key] = value
    opt_config.optimizer.total_steps = int(config.stages[stage_name].num_epochs) * steps_per_epoch
    if stage.frozen_modules(config):
      opt_config.optimizer.frozen_modules = tuple(stage.frozen_modules(config))
  return _Run(stage=stage, config=config, opt_config=opt_config, workdir=workdir, teacher_dir=teacher_dir,
              mesh=mesh, members=Members.from_config(config, stage_name), data=data, context=context,
              steps_per_epoch=steps_per_epoch)


def _student_losses(run: _Run) -> tuple[list[dict[str, Any]], int]:
  if run.stage.name != "student":
    return [], 0
  return run.context.programs.student_losses(run.config)


def _train_step(run: _Run):
  """The stage's jitted, donated train step, built once per (stage, model, losses, optimizer, mesh, members)."""
  stage, config, programs = run.stage, run.config, run.context.programs
  student_losses = _student_losses(run)[0]

  def build():
    model, frozen_model = stage.models(config)
    step = steps.make_train_step(stage.loss(config, model, frozen_model, student_losses),
                                 make_optimizer(run.opt_config))
    return steps.jit_step(step, run.mesh, vmapped=run.members.vmapped)
  key = [stage.name, ckpt_lib.config_to_dict(config.model), stage.loss_key(config, student_losses),
         stages_lib.optimizer_key(run.opt_config), [list(run.mesh.axis_names), [d.id for d in run.mesh.devices.flat]],
         run.members.vmapped]
  return programs.get("train_step", key, build)


def _init_program(run: _Run, grafted: tuple[str, ...]):
  """Jitted `(key, example batch) -> variables` of the stage's model (the T-Net's input is the teacher's visual
  embedding). The sub-trees named in `grafted` come from an earlier stage: they are zeros here, so XLA drops
  their random initialisation (the student's R3D-18 init took 3 of the 5 s its init program compiled in)."""
  stage, config = run.stage, run.config

  def build():
    model, frozen_model = stage.models(config)

    def init(key, batch):
      if stage.init_from_teacher_visual:
        t_out = jax.eval_shape(lambda: frozen_model.init_with_output(jax.random.key(0), batch, train=False)[0])
        variables = model.init(key, jnp.zeros(t_out.visual.shape, jnp.float32))
      else:
        variables = model.init(key, batch, train=False)
      return {collection: {name: jax.tree.map(jnp.zeros_like, tree) if name in grafted else tree
                           for name, tree in trees.items()} for collection, trees in variables.items()}
    return jax.jit(init)
  return run.context.programs.get("init", [stage.name, ckpt_lib.config_to_dict(config.model), sorted(grafted)],
                                  build)


# --------------------------------------------------------------------------------------------- initial state
def _graft_sources(run: _Run) -> list[tuple[Any, tuple[str, ...]]]:
  """(saved variables, sub-tree names) of every graft of the stage that applies."""
  sources = []
  for graft in run.stage.grafts(run.config):
    path = run.saved(graft.source)
    if graft.optional and not os.path.exists(path):
      continue
    variables = _per_member(run.context.saved.load(path), run)
    if graft.into is not None:
      variables = {"params": {graft.into: variables["params"]}}
    sources.append((variables, graft.names))
  return sources


def _from_file(stage: stages_lib.Stage, config, grafted) -> tuple[str, ...]:
  """The backbones of the stage's model that start from the config's pretrained weight files: each configured
  one that no earlier stage provides (`grafted`). With unimodal pretraining in the pipeline that is its stages,
  else the teacher; the stages after them graft the trained backbone."""
  model = stage.models(config)[0]
  return tuple(name for name in pretrained_lib.configured(config.model)
               if getattr(model, name, None) is not None and name not in grafted)


def _graft_variables(variables: dict, source: dict, names) -> dict:
  """Copies the sub-trees `names` of `source` ({"params", "batch_stats"}) into `variables`; shapes must match."""
  out = {collection: dict(tree) for collection, tree in variables.items()}
  for name in names:
    if name not in source.get("params", {}) or name not in out["params"]:
      raise errors.ConfigError(f"cannot initialise {name!r} from the earlier stage: present in the new model: "
                               f"{name in out['params']}, in the earlier stage: {name in source.get('params', {})}")
    for collection in ("params", "batch_stats"):
      if name not in source.get(collection, {}):
        continue
      new_shapes = jax.tree.map(jnp.shape, out[collection][name])
      old_shapes = jax.tree.map(jnp.shape, source[collection][name])
      if new_shapes != old_shapes:
        raise errors.ConfigError(f"cannot initialise {name!r} from the earlier stage: {collection} shapes differ "
                                 f"({old_shapes} vs {new_shapes})")
      out[collection][name] = source[collection][name]
  return out


def _per_member(tree: Any, run: _Run) -> Any:
  return run.members.arrange(tree, tuple(int(s) for s in run.config.seeds))


def _member(tree: Any, m: int, vmapped: bool) -> Any:
  return jax.tree.map(lambda x: x[m], tree) if vmapped else tree


def _init_key(seed: int, stage_name: str) -> jax.Array:
  """The initialisation key of a (member seed, stage) pair: seed * 5 + position for the five stages of the first
  table (their keys never change), a stream of its own for any stage appended after them."""
  position = STAGES.index(stage_name)
  if position < 5:
    return jax.random.key(seed * 5 + position, impl="rbg")
  return jax.random.fold_in(jax.random.key(seed, impl="rbg"), position)


def _initial_state(run: _Run) -> TrainState:
  """Every member's freshly initialised state (grafts applied), stacked and placed on the mesh. Each (member
  seed, stage) pair has its own key; the "rbg" PRNG, because XLA:CPU compiles a threefry-based init of many
  tensors several times slower (models.init_variables)."""
  members, config = run.members, run.config
  sources = _graft_sources(run)
  grafted = tuple(name for _, names in sources for name in names)
  from_file = {name: pretrained_lib.load(config.model, name) for name in _from_file(run.stage, config, grafted)}
  init = _init_program(run, grafted + tuple(from_file))
  optax_init = run.context.programs.get("opt_init", stages_lib.optimizer_key(run.opt_config),
                                        lambda: jax.jit(make_optimizer(run.opt_config).init))
  frozen_teacher = _per_member(run.context.saved.load(run.saved("teacher")), run) if run.stage.reads_teacher \
      else None
  example = run.data.example_batch(config.batch_size)
  branch = _student_losses(run)[1]
  states = []
  for m, (seed, weight) in enumerate(zip(members.seeds, members.weights)):
    variables = dict(init(_init_key(seed, run.stage.name), example))
    for name, converted in from_file.items():
      variables = pretrained_lib.insert(variables, name, converted)
    for source, names in sources:
      variables = _graft_variables(variables, _member(source, m, members.vmapped), names)
    frozen = {"teacher": _member(frozen_teacher, m, members.vmapped)} if frozen_teacher is not None else {}
    # Arrays, not constants of the program: members and runs differing only in them share a compiled step.
    hparams = {"distill_weight": weight, "task_weight": float(config.distill.task_weight), "distill_branch": branch}
    states.append(TrainState.create(params=variables["params"], batch_stats=variables.get("batch_stats", {}),
                                    opt_state=optax_init(variables["params"]), frozen=frozen, hparams=hparams))
  state = parallel.stack_host(states) if members.vmapped else states[0]
  return parallel.replicate(state, run.mesh)


# ------------------------------------------------------------------------------------------ best tracking
@dataclasses.dataclass
class _Best:
  """Per member: the best validation score so far, its epoch (-1: none yet) and its variables (host copies:
  the live state's buffers are donated to the next step)."""
  score: np.ndarray
  epoch: np.ndarray
  variables: Any

  @classmethod
  def empty(cls, state: TrainState, num_members: int) -> "_Best":
    return cls(np.full(num_members, -np.inf), np.full(num_members, -1, np.int64),
               jax.tree.map(np.array, state.variables()))

  def update(self, scores: np.ndarray, epoch: int, variables: Any, vmapped: bool) -> None:
    improved = scores > self.score
    self.score = np.where(improved, scores, self.score)
    self.epoch = np.where(improved, epoch, self.epoch)
    if not vmapped:
      self.variables = jax.tree.map(_copy, variables) if bool(improved[0]) else self.variables
      return

    def pick(new, old):
      xp = np if isinstance(new, np.ndarray) and isinstance(old, np.ndarray) else jnp  # host members on CPUs
      return xp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    self.variables = jax.tree.map(pick, variables, self.variables)

  def tree(self) -> dict[str, Any]:
    """What a checkpoint stores (host arrays: every process holds the same, and orbax writes them once)."""
    return {"score": np.asarray(self.score, np.float32), "epoch": np.asarray(self.epoch, np.int32),
            "variables": self.variables}

  @classmethod
  def from_tree(cls, tree: dict[str, Any]) -> "_Best":
    return cls(np.asarray(tree["score"]), np.asarray(tree["epoch"]), tree["variables"])


def _copy(x):
  return np.array(x) if isinstance(x, np.ndarray) else jnp.copy(x)


@dataclasses.dataclass
class _EpochLoss:
  """Per member: the sum (float64) and count of the current epoch's step losses. Checkpoints carry it, so an
  epoch resumed mid-way reports the mean over all its steps, bit for bit the uninterrupted run's."""
  total: np.ndarray
  count: int

  @classmethod
  def empty(cls, num_members: int) -> "_EpochLoss":
    return cls(np.zeros(num_members, np.float64), 0)

  def add(self, loss) -> None:
    self.total = self.total + np.asarray(loss, np.float64).reshape(-1)
    self.count += 1

  def mean(self) -> list[float] | None:
    return (self.total / self.count).tolist() if self.count else None

  def tree(self) -> dict[str, np.ndarray]:
    return {"sum": np.array(self.total, np.float64), "count": np.asarray(self.count, np.int64)}

  @classmethod
  def from_tree(cls, tree: dict[str, Any]) -> "_EpochLoss":
    return cls(np.asarray(tree["sum"], np.float64), int(tree["count"]))


def _checkpoint_tree(state: TrainState, best: _Best, epoch_loss: _EpochLoss) -> dict[str, Any]:
  return {"state": state.checkpoint_tree(), "best": best.tree(), "epoch_loss": epoch_loss.tree()}


def _scores(record, metric: str, mode: str, num_members: int) -> np.ndarray:
  if "val" not in record:
    return np.full(num_members, -np.inf)
  values = np.asarray([m[metric] for m in record["val"]], np.float64)
  return -values if mode == "min" else values


def _restore_or_init(run: _Run, checkpointer) -> tuple[TrainState, _Best, _EpochLoss, int]:
  """(state, best, the epoch's losses so far, first step): from the latest checkpoint when there is one, else
  freshly initialised."""
  state = _initial_state(run)
  best = _Best.empty(state, len(run.members))
  epoch_loss = _EpochLoss.empty(len(run.members))
  if checkpointer.latest_step() is None:
    return state, best, epoch_loss, 0
  target = _checkpoint_tree(state, best, epoch_loss)
  if "epoch_loss" not in checkpointer.saved_keys():
    # Saved by a version that did not checkpoint the epoch's losses: the resumed epoch's train loss averages
    # the steps after the resume only (as that version did).
    target.pop("epoch_loss")
  restored = checkpointer.restore_latest(target)
  state = state.restored(restored["state"])
  if "epoch_loss" in restored:
    epoch_loss = _EpochLoss.from_tree(restored["epoch_loss"])
  return state, _Best.from_tree(restored["best"]), epoch_loss, int(np.asarray(state.step).reshape(-1)[0])


# ------------------------------------------------------------------------------------------------ training
def _train_epoch(run: _Run, state: TrainState, step: int, train_step, cache, checkpointer, best: _Best,
                 epoch_loss: _EpochLoss, watch: watch_lib.StageWatch,
                 stop_after_steps: int | None) -> tuple[TrainState, int, bool]:
  """Trains from `step` to the end of its epoch (or to `stop_after_steps`), adding the step losses to
  `epoch_loss`; returns (state, step, stopped early). Step metrics reach the host (and `watch`) every
  `log_every` steps. A signal (`preemption`) stops it after the step in progress, with a checkpoint of
  that step."""
  config, members = run.config, run.members
  epoch = step // run.steps_per_epoch
  member_keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in members.seeds])
  member_keys = member_keys if members.vmapped else member_keys[0]
  every = int(config.checkpoint.every_steps) or run.steps_per_epoch
  skip = step - epoch * run.steps_per_epoch
  single_process = jax.process_count() == 1
  window: list[Any] = []
  for local_batch in run.data.train_batches(epoch, members.seeds, config.batch_size, skip=skip):
    if cache is not None:
      local_batch = cache.add_to(local_batch)
    state, step_metrics = train_step(state, parallel.global_batch(local_batch, run.mesh,
                                                                  member_axis=members.vmapped), member_keys)
    step += 1
    window.append(step_metrics)
    end, save = step % run.steps_per_epoch == 0, step % every == 0 and step % run.steps_per_epoch != 0
    stop_now = stop_after_steps is not None and step >= stop_after_steps
    # One process reads its flag every step (no device work); a job agrees on it where its processes flush.
    signal = preemption.requested() if single_process else None
    if len(window) >= config.log_every or end or save or stop_now or signal:
      _flush(window, step, run, checkpointer, epoch_loss, watch)
      window = []
      signal = signal if single_process else preemption.agreed()
    if signal and not end:  # at an epoch's end, run_stage stops once the epoch is evaluated and recorded
      _stop(signal, run, checkpointer, step, _checkpoint_tree(state, best, epoch_loss))
    if save:
      checkpointer.save(step, _checkpoint_tree(state, best, epoch_loss))
    if stop_now:
      checkpointer.save(step, _checkpoint_tree(state, best, epoch_loss), force=True)
      return state, step, True
    if end:
      break
  return state, step, False


def _flush(window, step: int, run: _Run, checkpointer, epoch_loss: _EpochLoss, watch: watch_lib.StageWatch) -> None:
  """Moves a window of step metrics to the host (stopping at a non-finite one), adds its losses to the epoch's
  and hands them to `watch` (event files, the epoch's terms, the progress bar)."""
  host = _check_window(window, step - len(window) + 1, run.stage.name, checkpointer)
  for h in host:
    epoch_loss.add(h["loss"])
  watch.window(step - len(window) + 1, host, run.config.batch_size * len(run.members) * len(window))


def _stop(signum: int, run: _Run, checkpointer, step: int, tree: dict[str, Any]) -> None:
  """After a signal: a checkpoint of `step` (unless the latest already is), every write finished, then
  `preemption.Preempted` naming the step and where it was saved."""
  checkpointer.wait()
  if checkpointer.latest_step() != step:
    checkpointer.save(step, tree, force=True)
    checkpointer.wait()
  raise preemption.Preempted(
      signum, f"stopped by {preemption.name(signum)}: {run.stage.name} step {step} of {run.total_steps} saved in "
              f"{checkpointer.latest.directory}; run the same command again to resume from it")


def _check_window(window, first_step: int, stage: str, checkpointer) -> list[dict[str, np.ndarray]]:
  """Moves a window of step metrics to the host; stops at the first non-finite step, naming the term."""
  host = [parallel.to_host(w) for w in window]
  for i, h in enumerate(host):
    if "finite" in h and not np.all(h["finite"] > 0):
      bad_terms = [k for k, v in h.items() if k != "finite" and not np.all(np.isfinite(v))]
      checkpointer.wait()
      last = checkpointer.latest_step()
      raise NonFiniteLossError(
          f"{stage}: non-finite loss at step {first_step + i} (terms: {', '.join(bad_terms) or 'gradient'}); "
          f"parameters were not updated with it and no further checkpoint is written. Last good checkpoint: "
          f"{'step ' + str(last) if last is not None else 'none'} in {checkpointer.latest.directory}")
  return host


def _end_of_epoch(run: _Run, state: TrainState, best: _Best, step: int, epoch_loss: _EpochLoss, eval_fn,
                  watch: watch_lib.StageWatch) -> None:
  """Evaluates every member on validation (and test), updates the best and appends the epoch's record (with
  `train_terms`: per step term, its mean over the epoch's steps this process ran, per member)."""
  members, config = run.members, run.config
  epoch = step // run.steps_per_epoch
  record = {"stage": run.stage.name, "epoch": epoch, "step": step, "members": members.names(),
            "train_loss": epoch_loss.mean(), "train_terms": watch.epoch_terms()}
  for split in ("val", "test") if config.test_every_epoch else ("val",):
    if len(getattr(run.data, split)):
      record[split] = evaluation.evaluate(eval_fn, state.variables(), state.frozen, run.data, split, config,
                                          run.mesh, len(members), members.vmapped)
  metric, mode = run.stage.select(config)
  best.update(_scores(record, metric, mode, len(members)), epoch, state.variables(), members.vmapped)
  record["best_epoch"] = best.epoch.tolist()
  if _is_writer():
    records.append_jsonl(run.log_path, record)
  watch.epoch(record, metric)


# ---------------------------------------------------------------------------------------------- the stage
def run_stage(stage: str, config, workdir: str, *, teacher_dir: str | None = None, mesh=None,
              stop_after_steps: int | None = None, context: Context | None = None) -> dict[str, Any]:
  """Trains one stage to completion (or resumes it) and returns its result record.

  `context`: the caller's compiled programs and caches (a fresh one when None). `stop_after_steps` ends the run
  early after a checkpoint at that step, as if killed (used by the resume tests).
  """
  if ckpt_lib.stage_finished(workdir, stage, writer=_is_writer()):
    console.info(f"{stage}: done, skipped ({records.result_path(workdir, stage)} exists)")
    return records.read_dict(records.result_path(workdir, stage))
  # Signals stop training cleanly (`preemption`); the workdir is this job's alone (`locks`): its start-up
  # clean-up (orbax's temporary directories) and writes never touch another live process's files.
  with preemption.handling(), _claim(workdir, "workdir", wait=False):
    signum = preemption.agreed()
    if signum:
      raise preemption.Preempted(signum, f"stopped by {preemption.name(signum)} before stage {stage} started; "
                                         f"run the same command again to continue")
    return _train_stage(stage, config, workdir, teacher_dir, mesh, stop_after_steps, context)


def _train_stage(stage: str, config, workdir: str, teacher_dir: str | None, mesh, stop_after_steps: int | None,
                 context: Context | None) -> dict[str, Any]:
  if _is_writer():
    records.repair_jsonl(records.metrics_path(workdir))  # a line cut short by a crash, set aside before training
  run = _setup(stage, config, workdir, teacher_dir or workdir, mesh, context or Context())
  train_step = _train_step(run)
  eval_fn = evaluation.eval_program(stage, config, run.members.vmapped, run.context.programs)
  checkpointer = ckpt_lib.Checkpointer(run.stage_dir, max_to_keep=config.checkpoint.max_to_keep,
                                       min_interval_secs=config.checkpoint.min_interval_secs)
  state, best, epoch_loss, step = _restore_or_init(run, checkpointer)
  cache = _teacher_cache(run)
  watch = watch_lib.StageWatch(stage, run.stage_dir, run.members.names(), run.total_steps, run.steps_per_epoch,
                               step, learning_rate(run.opt_config), _is_writer(), config.progress)
  t_stage = time.time()
  try:
    while step < run.total_steps:
      state, step, stopped = _train_epoch(run, state, step, train_step, cache, checkpointer, best, epoch_loss,
                                          watch, stop_after_steps)
      if stopped:
        checkpointer.wait()
        watch.close(f"stopped at step {step} of {run.total_steps} (checkpoint saved)")
        return {"stopped_at": step}
      _end_of_epoch(run, state, best, step, epoch_loss, eval_fn, watch)
      epoch_loss = _EpochLoss.empty(len(run.members))
      checkpointer.save(step, _checkpoint_tree(state, best, epoch_loss))
      signum = preemption.agreed() if step < run.total_steps else None  # (a finished stage writes its outputs)
      if signum:
        _stop(signum, run, checkpointer, step, _checkpoint_tree(state, best, epoch_loss))
  finally:
    watch.close()  # the event file is flushed whatever happens; a second close does nothing
  checkpointer.wait()
  result = _write_outputs(run, state, best, eval_fn, time.time() - t_stage)
  checkpointer.close()
  console.info(f"{stage}: trained in {time.time() - t_stage:.1f} s (best epoch per member: "
               f"{', '.join(str(m['best_epoch']) for m in result['members'])})")
  return result


def _teacher_cache(run: _Run):
  """Teacher outputs computed once per example (student stage, `config.cache_teacher`, deterministic inputs)."""
  config, losses = run.config, _student_losses(run)[0]
  # A program that holds a distillation loss reads the teacher even in a run whose own loss is "none" (the
  # task-only control sharing it): the cache spares that run the teacher forward too.
  if run.stage.name != "student" or not any(steps.branch_methods(b) for b in losses) \
      or not config.cache_teacher:
    return None
  need_heads = any(b["mt_pkdot"] for b in losses)
  teacher = _per_member(run.context.saved.load(run.saved("teacher")), run)
  return evaluation.teacher_cache(teacher, run.data, config, run.mesh, run.members.vmapped, need_heads,
                                  run.context.programs)


def _write_outputs(run: _Run, state: TrainState, best: _Best, eval_fn, seconds: float) -> dict[str, Any]:
  """The stage's outputs: `best/` (the best variables, or the last ones without a validation split), the test
  metrics of the selected variables when not scored every epoch, and result.json, written last."""
  final_vars = best.variables if np.all(best.epoch > 0) else state.variables()
  final_test = None
  if not run.config.test_every_epoch and len(run.data.test):  # the selected variables, scored once
    final_test = evaluation.evaluate(eval_fn, final_vars, state.frozen, run.data, "test", run.config, run.mesh,
                                     len(run.members), run.members.vmapped)
  os.makedirs(run.stage_dir, exist_ok=True)
  ckpt_lib.save_variables(records.best_dir(run.workdir, run.stage.name), parallel.to_host(final_vars))
  result_path = records.result_path(run.workdir, run.stage.name)
  if _is_writer():
    records.write_json(result_path, _stage_result(run, best, seconds, final_test), indent=2)
  _sync(f"{run.stage_dir} done")
  return records.read_dict(result_path)


def _stage_result(run: _Run, best: _Best, seconds: float, final_test=None) -> dict[str, Any]:
  """Per member: the test metrics at the best validation epoch (the number a paper table reports); from
  `final_test` when the test split was scored only once, with the selected variables."""
  records = [r for r in read_metrics(run.workdir) if r["stage"] == run.stage.name]
  by_epoch = {r["epoch"]: r for r in records}
  members = run.members
  per_member = []
  for m, name in enumerate(members.names()):
    epoch = int(best.epoch[m]) if best.epoch[m] > 0 else (records[-1]["epoch"] if records else 0)
    record = by_epoch.get(epoch, {})
    per_member.append({"member": name, "seed": members.seeds[m], "weight": members.weights[m],
                       "best_epoch": epoch,
                       "val": record.get("val", [None] * len(members))[m] if "val" in record else None,
                       "test": final_test[m] if final_test is not None else
                       record.get("test", [None] * len(members))[m] if "test" in record else None})
  return {"stage": run.stage.name, "select_metric": run.stage.select(run.config)[0], "seconds": seconds,
          "members": per_member}


# ------------------------------------------------------------------------------------------------ records
def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """metrics.jsonl records, the last one kept per (stage, epoch) (a resumed epoch may appear twice)."""
  return records.read_metrics(workdir, STAGES)


stage_done = ckpt_lib.stage_done


# ------------------------------------------------------------------------------------------------ pipeline
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
  if "student" in stages and own["method"] != "none" and config.model.student.mode == "video_only" \
      and config.distill.mt_pkdot:
    raise errors.ConfigError("MT-PKDOT distils into the T-Net + fusion student, not the video_only one")


def check_run(config, workdir: str, stages: tuple[str, ...], context: Context | None = None) -> None:
  """Every check that can run before anything is written: the config (`validate_config`), the models' and
  optimizers' settings of every stage (building them allocates nothing), the mesh and batch, the earlier
  stages this run reads but does not train, and the configs saved in the workdir and teacher directory."""
  validate_config(config, stages, context)
  context = context or Context()
  teacher_dir = config.teacher_workdir or workdir
  for name in stages:
    stage = stages_lib.get(name)
    if name not in config.stages:
      raise errors.ConfigError(f"config.stages has no entry for stage {name!r} "
                               f"(has: {', '.join(config.stages.keys())})")
    model, frozen_model = stage.models(config)  # the model config checks (dtype, fusion, task, ...)
    stage.loss(config, model, frozen_model, context.programs.student_losses(config)[0])
    opt_config = config.copy_and_resolve_references()
    with opt_config.unlocked():
      opt_config.optimizer.update(dict(config.stages[name].get("optimizer", {})))
      opt_config.optimizer.total_steps = 1
    make_optimizer(opt_config)
    needed = [g.source for g in stage.grafts(config) if not g.optional] + (["teacher"] if stage.reads_teacher else [])
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
      pretrained_lib.check(config.model, _from_file(stage, config, grafted))
  parallel.check_global_batch(config.batch_size, parallel.make_mesh(config.num_devices))
  input_lib.check_data_config(config)
  if "student" in stages and config.distill.method != "none" and config.cache_teacher and config.data.augment:
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


def run_pipeline(config, workdir: str, stages: tuple[str, ...] | None = None, *,
                 context: Context | None = None, wait_for_workdir: bool = False,
                 wait_for_teacher: bool = True) -> dict[str, Any]:
  """Runs the stages in order (default: config.pipeline), each skipped if already done.

  Teacher-side stages run in `config.teacher_workdir` when set (shared by the runs of a sweep), the student in
  `workdir`. `context`: compiled programs and caches to share with other runs of this process. Nothing is
  written before the config has passed `check_run`.

  The workdir is claimed for the whole run (`locks`): one held by another live process raises locks.InUse
  naming it (or, `wait_for_workdir`, waits for it). A separate teacher directory is claimed while its config is
  checked and its stages run: one held by another process (another run of a sweep training the same teacher)
  is waited for, then its finished stages are skipped (`wait_for_teacher=False`: locks.InUse instead).
  """
  context = context or Context()
  stages = tuple(stages or config.pipeline)
  check_run(config, workdir, stages, context)
  teacher_dir = config.teacher_workdir or workdir
  with preemption.handling(), _claim(workdir, "workdir", wait_for_workdir), contextlib.ExitStack() as teacher:
    ckpt_lib.check_or_write_config(workdir, config, write=_is_writer())
    if _is_writer():
      runinfo.write(workdir, config)
    if teacher_dir != workdir:
      teacher.enter_context(_claim(teacher_dir, "teacher directory", wait_for_teacher))
      ckpt_lib.check_or_write_config(teacher_dir, config, drop=stages_lib.FIELDS.teacher_neutral,
                                     write=_is_writer())
    _sync(f"{workdir} config")
    results = {}
    for stage in stages:
      teacher_side = stages_lib.get(stage).teacher_side
      if not teacher_side:
        teacher.close()  # the teacher directory is only read from here on
      stage_workdir = teacher_dir if teacher_side else workdir
      results[stage] = run_stage(stage, config, stage_workdir, teacher_dir=teacher_dir, context=context)
  return results
