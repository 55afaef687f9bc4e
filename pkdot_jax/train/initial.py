"""A stage's first state: freshly initialised variables, backbones from pretrained weight files, sub-trees
grafted from earlier stages, the frozen model, or else the latest checkpoint of the stage.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pkdot_jax import errors
from pkdot_jax.models import pretrained as pretrained_lib
from pkdot_jax.train import parallel
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train.members import member
from pkdot_jax.train.programs import ProgramSpec, build_init, build_opt_init
from pkdot_jax.train.runs import Run, loss_branches
from pkdot_jax.train.state import TrainState
from pkdot_jax.train.tracking import Best, EpochLoss, checkpoint_tree


def graft_sources(run: Run) -> list[tuple[Any, tuple[str, ...]]]:
  """(saved variables, sub-tree names) of every graft of the stage that applies."""
  sources = []
  for graft in run.stage.grafts(run.config):
    path = run.saved(graft.source)
    if graft.optional and not os.path.exists(path):
      continue
    variables = run.per_member(run.context.saved.load(path))
    if graft.into is not None:
      variables = {"params": {graft.into: variables["params"]}}
    sources.append((variables, graft.names))
  return sources


def from_file(stage: stages_lib.Stage, config, grafted) -> tuple[str, ...]:
  """The backbones of the stage's model that start from the config's pretrained weight files: each configured
  one that no earlier stage provides (`grafted`). With unimodal pretraining in the pipeline that is its stages,
  else the teacher; the stages after them graft the trained backbone."""
  model = stage.models(config)[0]
  return tuple(name for name in pretrained_lib.configured(config.model)
               if getattr(model, name, None) is not None and name not in grafted)


def graft_variables(variables: dict, source: dict, names) -> dict:
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


def init_key(seed: int, stage_name: str) -> jax.Array:
  """The initialisation key of a (member seed, stage) pair: seed * 5 + position for the five stages of the first
  table (their keys never change), a stream of its own for any stage appended after them."""
  position = stages_lib.STAGE_ORDER.index(stage_name)
  if position < 5:
    return jax.random.key(seed * 5 + position, impl="rbg")
  return jax.random.fold_in(jax.random.key(seed, impl="rbg"), position)


def initial_state(run: Run) -> TrainState:
  """Every member's freshly initialised state (grafts applied), stacked and placed on the mesh. Each (member
  seed, stage) pair has its own key; the "rbg" PRNG, because XLA:CPU compiles a threefry-based init of many
  tensors several times slower (models.init_variables)."""
  members, config, programs = run.members, run.config, run.context.programs
  sources = graft_sources(run)
  grafted = tuple(name for _, names in sources for name in names)
  files = {name: pretrained_lib.load(config.model, name) for name in from_file(run.stage, config, grafted)}
  init = programs.get(ProgramSpec.of("init", run.stage.name, config, grafted=grafted + tuple(files)), build_init)
  optax_init = programs.get(ProgramSpec.of("opt_init", "", config, opt_config=run.opt_config), build_opt_init)
  frozen_source = run.stage.frozen_from
  frozen_teacher = None if frozen_source is None else run.per_member(run.context.saved.load(run.saved(frozen_source)))
  example = run.data.example_batch(config.batch_size)
  branch = loss_branches(run)[1]
  states = []
  for m, (seed, weight) in enumerate(zip(members.seeds, members.weights)):
    variables = dict(init(init_key(seed, run.stage.name), example))
    for name, converted in files.items():
      variables = pretrained_lib.insert(variables, name, converted)
    for source, names in sources:
      variables = graft_variables(variables, member(source, m, members.vmapped), names)
    frozen = {"teacher": member(frozen_teacher, m, members.vmapped)} if frozen_teacher is not None else {}
    # Arrays, not constants of the program: members and runs differing only in them share a compiled step.
    hparams = {"distill_weight": weight, "task_weight": float(config.distill.task_weight), "distill_branch": branch}
    states.append(TrainState.create(params=variables["params"], batch_stats=variables.get("batch_stats", {}),
                                    opt_state=optax_init(variables["params"]), frozen=frozen, hparams=hparams))
  state = parallel.stack_host(states) if members.vmapped else states[0]
  return parallel.replicate(state, run.mesh)


def restore_or_init(run: Run, checkpointer) -> tuple[TrainState, Best, EpochLoss, int]:
  """(state, best, the epoch's losses so far, first step): from the latest checkpoint when there is one, else
  freshly initialised."""
  state = initial_state(run)
  best = Best.empty(state, len(run.members))
  epoch_loss = EpochLoss.empty(len(run.members))
  if checkpointer.latest_step() is None:
    return state, best, epoch_loss, 0
  target = checkpoint_tree(state, best, epoch_loss)
  if "epoch_loss" not in checkpointer.saved_keys():
    # Saved by a version that did not checkpoint the epoch's losses: the resumed epoch's train loss averages
    # the steps after the resume only (as that version did).
    target.pop("epoch_loss")
  restored = checkpointer.restore_latest(target)
  state = state.restored(restored["state"])
  if "epoch_loss" in restored:
    epoch_loss = EpochLoss.from_tree(restored["epoch_loss"])
  return state, Best.from_tree(restored["best"]), epoch_loss, int(np.asarray(state.step).reshape(-1)[0])
