"""The training loop: one function runs a stage (teacher, T-Net, student, unimodal pretraining) in a workdir.

Several *members* (seeds, or distillation weights) of one config train side by side in one compiled program
(`steps.over_members`: vmap on accelerators, the single-member program per member on CPUs): every array of the
state gets a leading member axis, every member reads its own data order.
With one member nothing is vmapped. Compiled programs are kept per process and keyed by what shapes them (stage,
model, losses, optimizer, mesh), so the folds, seeds and methods of a sweep run in one process trace and compile
each program once. Runs are resumable: re-running the same command restores the latest
checkpoint, skips the batches already consumed in the current epoch (data order is a function of seed and epoch,
step keys of seed and step), and continues to the same final parameters as an uninterrupted run.

Workdir layout (one run = one config = one fold):
  config.json, run_info.json        the config; versions, devices, git revision
  metrics.jsonl                     one record per stage and epoch (train loss, val and test metrics per member;
                                    test only in result.json when config.test_every_epoch is False)
  <stage>/checkpoints/              periodic checkpoints (resume points)
  <stage>/best/                     the members' variables at their best validation epoch (next stage's input)
  <stage>/result.json               written last: the stage is done and is skipped on re-runs
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from pkdot_jax import metrics as metrics_lib
from pkdot_jax import models
from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import input as input_lib
from pkdot_jax.train import parallel, runinfo, steps
from pkdot_jax.train.state import TrainState, make_optimizer

STAGES = ("pretrain_video", "pretrain_privileged", "teacher", "tnet", "student")
TEACHER_STAGES = STAGES[:4]
# Config fields that do not affect the teacher, its T-Net, or their training (a teacher directory shared by
# several student runs compares only the rest).
STUDENT_ONLY_FIELDS = ("distill", "stages.student", "model.student", "cache_teacher", "pipeline",
                       "student_init_from_teacher", "teacher_workdir", "log_every", "progress", "select_metric")


class NonFiniteLossError(FloatingPointError):
  pass


@dataclasses.dataclass
class Members:
  """The runs trained together: one per (seed, distillation weight)."""
  seeds: tuple[int, ...]
  weights: tuple[float, ...]

  @classmethod
  def from_config(cls, config) -> "Members":
    seeds = tuple(int(s) for s in config.seeds)
    weight = config.distill.weight
    weights = tuple(float(w) for w in (weight if isinstance(weight, (list, tuple)) else [weight]))
    pairs = [(s, w) for w in weights for s in seeds]
    return cls(seeds=tuple(p[0] for p in pairs), weights=tuple(p[1] for p in pairs))

  def __len__(self) -> int:
    return len(self.seeds)

  @property
  def vmapped(self) -> bool:
    return len(self) > 1

  def names(self) -> list[str]:
    return [f"seed{s}_w{w:g}" for s, w in zip(self.seeds, self.weights)]


def _index(tree: Any, m: int) -> Any:
  return jax.tree.map(lambda x: x[m], tree)


# --------------------------------------------------------------------------------------------- model set-up
def _stage_models(stage: str, config):
  """(trained model, frozen teacher model or None) of a stage."""
  mcfg = config.model
  if stage == "teacher":
    return models.build_teacher(mcfg), None
  if stage == "tnet":
    return models.build_tnet(mcfg), models.build_teacher(mcfg)
  if stage == "student":
    return models.build_student(mcfg), models.build_teacher(mcfg)
  if stage in ("pretrain_video", "pretrain_privileged"):
    return models.build_unimodal(mcfg, "video" if stage == "pretrain_video" else mcfg.privileged), None
  raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")


# Jitted functions (and the models and optimizers they close over) built once per process per signature: a
# second fold, seed set or method of the same shapes reuses the traced and compiled program.
_PROGRAMS: dict[str, Any] = {}


def clear_programs() -> None:
  _PROGRAMS.clear()


def _memo(kind: str, signature: Any, build: Callable[[], Any]) -> Any:
  key = kind + ":" + json.dumps(signature, sort_keys=True, default=str)
  if key not in _PROGRAMS:
    _PROGRAMS[key] = build()
  return _PROGRAMS[key]


def _model_signature(config) -> dict[str, Any]:
  return ckpt_lib.config_to_dict(config.model)


def _mesh_signature(mesh) -> list[Any]:
  return [list(mesh.axis_names), [d.id for d in mesh.devices.flat]]


def _distill_branches(config) -> tuple[list[dict[str, Any]], int]:
  """The distillation losses compiled into the student program and the index of this run's."""
  own = steps.distill_branch(config.distill)
  branches = [steps.distill_branch(b) for b in config.distill.get("branches", ())]
  if not branches:
    return [own], 0
  if own not in branches:
    raise ValueError(f"config.distill: the run's loss {own} is not one of config.distill.branches {branches}")
  return branches, branches.index(own)


def _init_fn(stage: str, config, grafted: tuple[str, ...]):
  """Jitted `(key, example batch) -> variables` of a stage's model (the T-Net's input is the teacher's visual
  embedding). The sub-trees named in `grafted` come from an earlier stage: they are zeros here, so XLA drops
  their random initialisation (the student's R3D-18 init took 3 of the 5 s its init program compiled in)."""
  def build():
    model, teacher = _stage_models(stage, config)

    def init(key, batch):
      if stage == "tnet":
        t_out = jax.eval_shape(lambda: teacher.init_with_output(jax.random.key(0), batch, train=False)[0])
        variables = model.init(key, jnp.zeros(t_out.visual.shape, jnp.float32))
      else:
        variables = model.init(key, batch, train=False)
      return {collection: {name: jax.tree.map(jnp.zeros_like, tree) if name in grafted else tree
                           for name, tree in trees.items()} for collection, trees in variables.items()}
    return jax.jit(init)
  return _memo("init", [stage, _model_signature(config), sorted(grafted)], build)


def _init_variables(stage: str, config, example_batch, seed: int, grafted: tuple[str, ...] = ()) -> dict:
  """Initial variables of a stage's model; each (member seed, stage) pair has its own key. The "rbg" PRNG:
  XLA:CPU compiles a threefry-based init of many tensors several times slower (models.init_variables)."""
  stage_seed = seed * len(STAGES) + STAGES.index(stage)
  return dict(_init_fn(stage, config, grafted)(jax.random.key(stage_seed, impl="rbg"), example_batch))


def _loss_signature(stage: str, config) -> dict[str, Any]:
  if stage == "tnet":
    return {"objective": config.tnet.objective}
  if stage == "student":
    return {"branches": _distill_branches(config)[0]}
  return {"multitask": stage == "teacher" and bool(config.model.multitask)}


def _loss_fn(stage: str, config, model, teacher):
  task = config.model.task
  if stage == "tnet":
    return steps.tnet_loss(model, teacher, config.tnet.objective)
  if stage == "student":
    return steps.student_loss(model, teacher, task, {"branches": _distill_branches(config)[0]})
  return steps.supervised_loss(model, task, mt_heads=(stage == "teacher" and config.model.multitask))


def _optimizer_signature(config_opt) -> dict[str, Any]:
  fields = ckpt_lib.config_to_dict(config_opt.optimizer)
  if fields.get("schedule", "constant") != "cosine":
    fields.pop("total_steps", None)  # only a schedule reads it: folds of different sizes share the program
  return fields


def _optimizer(config_opt):
  """One optimizer object per settings: it is a static field of the state, so programs are shared only when
  the object is."""
  return _memo("optimizer", _optimizer_signature(config_opt), lambda: make_optimizer(config_opt))


def _train_step(stage: str, config, config_opt, mesh, vmapped: bool):
  def build():
    model, teacher = _stage_models(stage, config)
    return steps.jit_step(steps.make_train_step(_loss_fn(stage, config, model, teacher)), mesh, vmapped=vmapped)
  signature = [stage, _model_signature(config), _loss_signature(stage, config),
               _optimizer_signature(config_opt), _mesh_signature(mesh), vmapped]
  return _memo("train_step", signature, build)


_SAVED: dict[tuple[str, int], Any] = {}


def _saved_variables(path: str) -> Any:
  """An earlier stage's saved variables as host arrays, read once per process while unchanged on disk (the
  runs of a sweep that share a teacher read it once)."""
  path = os.path.abspath(path)
  if not os.path.exists(path):
    return ckpt_lib.load_variables(path)  # FileNotFoundError naming the stage to run first
  key = (path, os.stat(path).st_mtime_ns)
  if key not in _SAVED:
    while len(_SAVED) >= 8:
      _SAVED.pop(next(iter(_SAVED)))
    _SAVED[key] = jax.tree.map(np.asarray, ckpt_lib.load_variables(path))
  return _SAVED[key]


def _graft_variables(variables: dict, source: dict, names) -> dict:
  """Copies the sub-trees `names` of `source` ({"params", "batch_stats"}) into `variables`; shapes must match."""
  out = {collection: dict(tree) for collection, tree in variables.items()}
  for name in names:
    if name not in source.get("params", {}) or name not in out["params"]:
      raise ValueError(f"cannot initialise {name!r} from the earlier stage: present in the new model: "
                       f"{name in out['params']}, in the earlier stage: {name in source.get('params', {})}")
    for collection in ("params", "batch_stats"):
      if name not in source.get(collection, {}):
        continue
      new_shapes = jax.tree.map(jnp.shape, out[collection][name])
      old_shapes = jax.tree.map(jnp.shape, source[collection][name])
      if new_shapes != old_shapes:
        raise ValueError(f"cannot initialise {name!r} from the earlier stage: {collection} shapes differ "
                         f"({old_shapes} vs {new_shapes})")
      out[collection][name] = source[collection][name]
  return out


# ------------------------------------------------------------------------------------------------ the stage
def run_stage(stage: str, config, workdir: str, *, teacher_dir: str | None = None, mesh=None,
              stop_after_steps: int | None = None) -> dict[str, Any]:
  """Trains one stage to completion (or resumes it) and returns its result record.

  `stop_after_steps` ends the run early after a checkpoint at that step, as if killed (used by the resume test).
  """
  teacher_dir = teacher_dir or workdir
  stage_dir = os.path.join(workdir, stage)
  result_path = os.path.join(stage_dir, "result.json")
  if os.path.exists(result_path):
    with open(result_path) as f:
      return json.load(f)
  mesh = mesh or parallel.make_mesh(config.get("num_devices"))
  members = Members.from_config(config)
  data = input_lib.load(config)
  parallel.check_global_batch(config.batch_size, mesh)
  task = config.model.task
  stage_cfg = config.stages[stage]
  num_epochs = int(stage_cfg.num_epochs)
  steps_per_epoch = len(data.train) // config.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f"{stage}: the training split has {len(data.train)} examples, fewer than one batch of "
                     f"{config.batch_size}")
  total_steps = num_epochs * steps_per_epoch

  config_opt = config.copy_and_resolve_references()
  with config_opt.unlocked():
    # Per-stage optimizer overrides, e.g. --config.stages.student.optimizer.learning_rate=1e-4.
    for key, value in stage_cfg.get("optimizer", {}).items():
      config_opt.optimizer[key] = value
    config_opt.optimizer.total_steps = total_steps
    if stage == "student" and config.model.student.mode == "tnet_fusion":
      config_opt.optimizer.frozen_modules = ("tnet",)
  tx = _optimizer(config_opt)
  opt_init = _memo("opt_init", _optimizer_signature(config_opt), lambda: jax.jit(tx.init))

  # Frozen inputs from earlier stages.
  frozen_teacher = None
  if stage in ("tnet", "student"):
    frozen_teacher = _saved_variables(os.path.join(teacher_dir, "teacher", "best"))
  tnet_params = None
  if stage == "student" and config.model.student.mode == "tnet_fusion":
    tnet_params = _saved_variables(os.path.join(teacher_dir, "tnet", "best"))["params"]

  # Sub-trees initialised from earlier stages: the teacher's backbones from unimodal pretraining (when those
  # stages ran), the student's from the teacher (config.student_init_from_teacher) and its fitted T-Net.
  sources: list[tuple[Any, tuple[str, ...]]] = []
  if stage == "teacher":
    for pretrain_stage, name in (("pretrain_video", "visual_backbone"),
                                 ("pretrain_privileged", "privileged_backbone")):
      path = os.path.join(teacher_dir, pretrain_stage, "best")
      if os.path.exists(path):
        sources.append((_saved_variables(path), (name,)))
  if stage == "student":
    sources.append((frozen_teacher, tuple(config.student_init_from_teacher)))
    if tnet_params is not None:
      sources.append(({"params": {"tnet": tnet_params}}, ("tnet",)))

  example = data.example_batch(config.batch_size)
  branch = _distill_branches(config)[1] if stage == "student" else 0

  def hparams(weight):
    # Arrays, not constants of the program: members and runs differing only in them share a compiled step.
    return {"distill_weight": weight, "task_weight": float(config.distill.task_weight), "distill_branch": branch}

  states = []
  for m, (seed, weight) in enumerate(zip(members.seeds, members.weights)):
    variables = _init_variables(stage, config, example, seed, grafted=tuple(n for _, ns in sources for n in ns))
    for source, names in sources:
      variables = _graft_variables(variables, _index(source, m) if members.vmapped else source, names)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    frozen = {}
    if frozen_teacher is not None:
      frozen = {"teacher": _index(frozen_teacher, m) if members.vmapped else frozen_teacher}
    states.append(TrainState.create(params=params, batch_stats=batch_stats, tx=tx, frozen=frozen,
                                    hparams=hparams(weight), opt_init=opt_init))
  state = steps.stack_host(states) if members.vmapped else states[0]
  state = parallel.replicate(state, mesh)
  del states

  train_step = _train_step(stage, config, config_opt, mesh, members.vmapped)
  eval_fn = eval_program(stage, config, members.vmapped)
  member_keys = jnp.stack([jax.random.key_data(jax.random.key(s)) for s in members.seeds])
  member_keys = member_keys if members.vmapped else member_keys[0]

  # Teacher cache: teacher outputs computed once per example (deterministic inputs only).
  cache = None
  if stage == "student" and config.distill.method != "none" and config.get("cache_teacher", False):
    if config.data.get("augment", False):
      raise ValueError("cache_teacher needs deterministic teacher inputs, but config.data.augment is on")
    need_heads = any(b["mt_pkdot"] for b in _distill_branches(config)[0])
    cache = _teacher_cache(frozen_teacher, data, config, mesh, members, need_heads)

  checkpointer = ckpt_lib.Checkpointer(stage_dir, max_to_keep=config.checkpoint.max_to_keep,
                                       min_interval_secs=config.checkpoint.get("min_interval_secs", 0.0))
  select_metric, select_mode = _selection(stage, task, config)
  # Copies: the live state's buffers are donated to the next step.
  best = {"score": np.full(len(members), -np.inf), "epoch": np.full(len(members), -1, np.int64),
          "variables": jax.tree.map(np.array, _variables_of(state))}
  start_step = 0
  if checkpointer.latest_step() is not None:
    restored = checkpointer.restore_latest({"state": state.trainable(), "best": _device_best(best)})
    state = state.with_trainable(restored["state"])
    best = {"score": np.asarray(restored["best"]["score"]), "epoch": np.asarray(restored["best"]["epoch"]),
            "variables": restored["best"]["variables"]}
    start_step = int(np.asarray(state.step).reshape(-1)[0])

  log_path = os.path.join(workdir, "metrics.jsonl")
  # Test metrics in every epoch's record (learning curves on test), or only for the selected variables.
  test_every_epoch = bool(config.get("test_every_epoch", True))
  every = int(config.checkpoint.every_steps) or steps_per_epoch
  step = start_step
  progress = tqdm(total=total_steps, initial=start_step, desc=stage, disable=not config.get("progress", True),
                  dynamic_ncols=True, leave=False)
  t_stage = time.time()
  while step < total_steps:
    epoch = step // steps_per_epoch
    skip = step - epoch * steps_per_epoch
    batches = data.train_batches(epoch, members.seeds, config.batch_size, skip=skip)
    window, t0, n_clips = [], time.time(), 0
    epoch_losses = []
    for local_batch in batches:
      if cache is not None:
        local_batch = cache.add_to(local_batch)
      batch = parallel.global_batch(local_batch, mesh, member_axis=members.vmapped)
      state, step_metrics = train_step(state, batch, member_keys)
      step += 1
      n_clips += config.batch_size * len(members)
      window.append(step_metrics)
      if len(window) >= config.log_every or step % steps_per_epoch == 0:
        host = _check_window(window, step - len(window) + 1, stage, checkpointer)
        epoch_losses.extend(h["loss"] for h in host)
        last = host[-1]
        postfix = {"loss": f"{np.mean(last['loss']):.4f}", "clips/s": f"{n_clips / (time.time() - t0):.0f}"}
        if "ot_iterations" in last:
          postfix["sinkhorn_it"] = int(np.max(last["ot_iterations"]))
        progress.set_postfix(postfix)
        progress.update(len(window))
        window = []
      if step % every == 0 and step % steps_per_epoch != 0:
        checkpointer.save(step, {"state": state.trainable(), "best": _device_best(best)})
      if stop_after_steps is not None and step >= stop_after_steps:
        checkpointer.save(step, {"state": state.trainable(), "best": _device_best(best)}, force=True)
        checkpointer.wait()
        progress.close()
        return {"stopped_at": step}
      if step % steps_per_epoch == 0:
        break
    # End of epoch: evaluate every member on validation and test, update the best, checkpoint.
    record = {"stage": stage, "epoch": epoch + 1, "step": step, "members": members.names(),
              "train_loss": np.atleast_1d(np.mean(np.stack(epoch_losses), axis=0)).tolist() if epoch_losses
              else None}
    variables = _variables_of(state)
    for split in ("val", "test") if test_every_epoch else ("val",):
      if len(getattr(data, split)):
        record[split] = _evaluate(eval_fn, variables, state.frozen, data, split, config, mesh, members)
    scores = _scores(record, select_metric, select_mode, len(members))
    improved = scores > best["score"]
    best["score"] = np.where(improved, scores, best["score"])
    best["epoch"] = np.where(improved, epoch + 1, best["epoch"])
    best["variables"] = _select_tree(improved, variables, best["variables"], members.vmapped)
    record["best_epoch"] = best["epoch"].tolist()
    _append_jsonl(log_path, record)
    checkpointer.save(step, {"state": state.trainable(), "best": _device_best(best)})
  progress.close()
  checkpointer.wait()

  # The stage's output: the best variables (or last ones when there is no validation split).
  os.makedirs(stage_dir, exist_ok=True)
  final_vars = best["variables"] if np.all(best["epoch"] > 0) else _variables_of(state)
  final_test = None
  if not test_every_epoch and len(data.test):  # the selected variables, scored once
    final_test = _evaluate(eval_fn, final_vars, state.frozen, data, "test", config, mesh, members)
  ckpt_lib.save_variables(os.path.join(stage_dir, "best"), parallel.to_host(final_vars))
  result = _stage_result(stage, log_path, best, members, time.time() - t_stage, select_metric, final_test)
  checkpointer.close()
  tmp = result_path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=2)
  os.replace(tmp, result_path)
  return result


# ---------------------------------------------------------------------------------------------- evaluation
def _selection(stage: str, task: str, config) -> tuple[str, str]:
  if stage == "tnet":
    return "tnet_mse", "min"
  default = "accuracy" if task == "classification" else "ccc_mean"
  return config.get("select_metric", default) or default, "max"


def _scores(record, metric: str, mode: str, num_members: int) -> np.ndarray:
  if "val" not in record:
    return np.full(num_members, -np.inf)
  values = np.asarray([m[metric] for m in record["val"]], np.float64)
  return -values if mode == "min" else values


def _variables_of(state: TrainState) -> dict[str, Any]:
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def _copy(x):
  return np.array(x) if isinstance(x, np.ndarray) else jnp.copy(x)


def _select_tree(improved: np.ndarray, new: Any, old: Any, vmapped: bool) -> Any:
  if not vmapped:
    return jax.tree.map(_copy, new) if bool(improved[0]) else old

  def pick(n, o):
    xp = np if isinstance(n, np.ndarray) and isinstance(o, np.ndarray) else jnp  # host members on CPUs
    return xp.where(improved.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

  return jax.tree.map(pick, new, old)


def _device_best(best) -> dict[str, Any]:
  return {"score": jnp.asarray(best["score"]), "epoch": jnp.asarray(best["epoch"]),
          "variables": best["variables"]}


def eval_program(stage: str, config, vmapped: bool) -> Callable:
  """Jitted `(variables, frozen, batch) -> outputs` in eval mode; over members when `vmapped`."""
  def build():
    model, teacher = _stage_models(stage, config)
    if stage == "tnet":
      def fn(variables, frozen, batch):
        t_out = teacher.apply(frozen["teacher"], batch, train=False)
        predicted = model.apply(variables, t_out.visual.astype(jnp.float32)).astype(jnp.float32)
        return {"squared_error": jnp.mean((predicted - t_out.privileged.astype(jnp.float32)) ** 2, axis=-1)}
    else:
      def fn(variables, frozen, batch):
        del frozen
        return steps.eval_outputs(model.apply(variables, batch, train=False))
    return steps.over_members(fn, (0, 0, None)) if vmapped else jax.jit(fn)
  kind = "model" if stage in ("teacher", "student") else stage  # the teacher and student evals: model outputs
  return _memo("eval", [kind, stage, _model_signature(config), vmapped], build)


def _evaluate(eval_fn, variables, frozen, data, split, config, mesh, members) -> list[dict[str, Any]]:
  """Metrics of every member on a whole split (padded batches, the padding masked out)."""
  outputs: dict[str, list[np.ndarray]] = {}
  fields: dict[str, list[np.ndarray]] = {"mask": [], "label": [], "valence_arousal": [], "video_id": []}
  for local_batch in data.eval_batches(split, config.eval_batch_size):
    out = eval_fn(variables, frozen, parallel.global_batch(local_batch, mesh))
    for key, value in parallel.to_host(out).items():
      outputs.setdefault(key, []).append(value)
    for key in fields:
      if key in local_batch:
        fields[key].append(local_batch[key])
  axis = 1 if members.vmapped else 0
  cat = {k: np.concatenate(v, axis=axis) for k, v in outputs.items()}
  host = {k: np.concatenate(v) for k, v in fields.items() if v}
  mask = host["mask"].astype(bool)
  results = []
  for m in range(len(members)):
    member = {k: (v[m] if members.vmapped else v)[mask] for k, v in cat.items()}
    if "squared_error" in member:
      results.append({"tnet_mse": float(member["squared_error"].mean()), "num_examples": int(mask.sum())})
    elif config.model.task == "classification":
      results.append(metrics_lib.classification_metrics(member["prediction"], host["label"][mask]))
    else:
      results.append(metrics_lib.regression_metrics(member["prediction"], host["valence_arousal"][mask],
                                                    host["video_id"][mask]))
  return results


def _check_window(window, first_step: int, stage: str, checkpointer) -> list[dict[str, np.ndarray]]:
  """Moves a window of step metrics to the host; stops at the first non-finite step, naming the term."""
  host = [jax.tree.map(np.asarray, w) for w in window]
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


def _append_jsonl(path: str, record: dict[str, Any]) -> None:
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """metrics.jsonl records, the last one kept per (stage, epoch) (a resumed epoch may appear twice)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  records: dict[tuple[str, int], dict[str, Any]] = {}
  with open(path) as f:
    for line in f:
      if line.strip():
        r = json.loads(line)
        records[(r["stage"], r["epoch"])] = r
  return sorted(records.values(), key=lambda r: (STAGES.index(r["stage"]), r["epoch"]))


def _stage_result(stage, log_path, best, members, seconds, select_metric, final_test=None) -> dict[str, Any]:
  """Per member: the test metrics at the best validation epoch (the number a paper table reports); from
  `final_test` when the test split was scored only once, with the selected variables."""
  records = [r for r in read_metrics(os.path.dirname(log_path)) if r["stage"] == stage]
  by_epoch = {r["epoch"]: r for r in records}
  per_member = []
  for m, name in enumerate(members.names()):
    epoch = int(best["epoch"][m]) if best["epoch"][m] > 0 else (records[-1]["epoch"] if records else 0)
    record = by_epoch.get(epoch, {})
    per_member.append({"member": name, "seed": members.seeds[m], "weight": members.weights[m],
                       "best_epoch": epoch,
                       "val": record.get("val", [None] * len(members))[m] if "val" in record else None,
                       "test": final_test[m] if final_test is not None else
                       record.get("test", [None] * len(members))[m] if "test" in record else None})
  return {"stage": stage, "select_metric": select_metric, "seconds": seconds, "members": per_member}


# ------------------------------------------------------------------------------------------- teacher cache
@dataclasses.dataclass
class TeacherCache:
  """Teacher outputs per training example, looked up on the host by the batch's "index" field.

  Arrays have a leading member axis when members are vmapped: (M, N, ...) instead of (N, ...). For MT-PKDOT the
  three heads' embeddings and predictions are kept too (N, 3, D) / (N, 3, K), so the per-batch head choice
  needs no teacher forward either."""
  position: dict[int, int]
  fields: dict[str, np.ndarray]  # batch field name -> per-example rows
  vmapped: bool

  def add_to(self, local_batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rows = np.vectorize(self.position.__getitem__)(local_batch["index"])  # (B,) or (M, B)
    batch = dict(local_batch)
    for name, values in self.fields.items():
      if self.vmapped:
        batch[name] = values[np.arange(values.shape[0])[:, None], rows]
      else:
        batch[name] = values[rows]
    return batch


def _teacher_cache(frozen_teacher, data, config, mesh, members, need_heads: bool) -> TeacherCache:
  if need_heads and not config.model.multitask:
    raise ValueError("MT-PKDOT needs a teacher with per-modality heads: set config.model.multitask=True")
  eval_fn = eval_program("teacher", config, members.vmapped)  # the teacher stage's own evaluation program
  names = {"embedding": "teacher_embedding", "prediction": "teacher_prediction"}
  if need_heads:
    names.update(head_embeddings="teacher_head_embeddings", head_predictions="teacher_head_predictions")
  frozen_teacher = parallel.replicate(frozen_teacher, mesh)
  fields: dict[str, list[np.ndarray]] = {}
  indices = []
  axis = 1 if members.vmapped else 0
  for local_batch in data.eval_batches("train", config.eval_batch_size):
    out = parallel.to_host(eval_fn(frozen_teacher, None, parallel.global_batch(local_batch, mesh)))
    keep = local_batch["mask"].astype(bool)
    for name, field in names.items():
      fields.setdefault(field, []).append(np.compress(keep, out[name], axis=axis))
    indices.append(local_batch["index"][keep])
  index = np.concatenate(indices)
  return TeacherCache(position={int(i): p for p, i in enumerate(index)},
                      fields={k: np.concatenate(v, axis=axis) for k, v in fields.items()}, vmapped=members.vmapped)


# ------------------------------------------------------------------------------------------------ pipeline
def validate_config(config, stages: tuple[str, ...]) -> None:
  """Checks what can be checked before any data is read or program compiled; names the field at fault."""
  from pkdot_jax import losses

  for stage in stages:
    if stage not in STAGES:
      raise ValueError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
  method = config.distill.method
  branches, _ = _distill_branches(config)  # ValueError when the run's loss is not among config.distill.branches
  for branch in branches:
    name = branch["method"]
    if name == "none":
      continue
    spec = losses.spec(name)  # ValueError listing the registered names on a typo
    if spec.inputs not in ("embeddings", "logits"):
      raise ValueError(f"config.distill.method={name!r} compares {spec.inputs}, which the trainer does not "
                       f"expose; choose one of the embedding- or logit-based losses")
    if spec.inputs == "logits" and config.model.task != "classification":
      raise ValueError(f"config.distill.method={name!r} compares class logits; it does not apply to the "
                       f"{config.model.task!r} task")
    if branch["mt_pkdot"] and not config.model.multitask:
      raise ValueError("config.distill.mt_pkdot needs a teacher with per-modality heads: set "
                       "config.model.multitask=True (before training the teacher)")
  if "student" in stages and method != "none" and config.model.student.mode == "video_only" \
      and config.distill.mt_pkdot:
    raise ValueError("MT-PKDOT distils into the T-Net + fusion student, not the video_only one")
  for name in ("batch_size", "eval_batch_size"):
    if config[name] < 1:
      raise ValueError(f"config.{name} must be >= 1, got {config[name]}")


def run_pipeline(config, workdir: str, stages: tuple[str, ...] | None = None) -> dict[str, Any]:
  """Runs the stages in order (default: config.pipeline), each skipped if already done.

  Teacher-side stages run in `config.teacher_workdir` when set (shared by the runs of a sweep), the student in
  `workdir`.
  """
  stages = tuple(stages or config.pipeline)
  validate_config(config, stages)
  teacher_dir = config.get("teacher_workdir") or workdir
  ckpt_lib.check_or_write_config(workdir, config)
  runinfo.write(workdir, config)
  if teacher_dir != workdir:
    ckpt_lib.check_or_write_config(teacher_dir, config, drop=STUDENT_ONLY_FIELDS)
  results = {}
  for stage in stages:
    stage_workdir = teacher_dir if stage in TEACHER_STAGES else workdir
    results[stage] = run_stage(stage, config, stage_workdir, teacher_dir=teacher_dir)
  return results
