"""What a process keeps between runs, owned by the caller: compiled programs, saved variables, decoded data.

The CLI creates one `Context` per command, a sweep one for all its runs, a test one per test; nothing is kept
at module level. Within a context, the folds, seeds and methods of a sweep trace and compile each program once,
read a shared teacher's variables once, and decode an in-memory dataset once.

A compiled program is built from a `ProgramSpec` alone: the spec is made from the config by one function
(`ProgramSpec.of`), holds only the fields that the stage declares its programs read (`Stage.program_fields`)
and is the program's cache key. A builder (`build_train_step`, `build_init`, `build_opt_init`,
`evaluation.build_eval`) takes the spec and nothing else, so reading a field the spec lacks fails when the
program is built instead of reusing a program built for another value.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import schema, steps
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train.state import make_optimizer

KINDS = ("init", "opt_init", "train_step", "eval")


# ------------------------------------------------------------------------------------------------ the specs
@dataclasses.dataclass(frozen=True)
class ProgramSpec:
  """Everything one compiled program depends on, and all its builder reads.

  kind: one of `KINDS`. stage: the stage whose model it runs ("" for the optimizer's init).
  fields: the config restricted to the stage's `program_fields` (frozen). losses: the distillation branches
  compiled into a train step (JSON). optimizer: the optimizer fields that shape its program (`optimizer_key`).
  mesh: the train step's device mesh. vmapped: the state carries a leading member axis. grafted: sub-trees of
  the initial variables taken from elsewhere (zeros in the init program).
  """
  kind: str
  stage: str
  fields: ml_collections.FrozenConfigDict
  losses: str = "[]"
  optimizer: ml_collections.FrozenConfigDict | None = None
  mesh: jax.sharding.Mesh | None = None
  vmapped: bool = False
  grafted: tuple[str, ...] = ()

  @classmethod
  def of(cls, kind: str, stage: str, config, *, opt_config=None, losses=(), mesh=None, vmapped: bool = False,
         grafted=()) -> "ProgramSpec":
    """The spec of a program of `stage` (its `program_fields` of `config`), the only way specs are made."""
    if kind not in KINDS:
      raise ValueError(f"unknown program kind {kind!r}; kinds are {', '.join(KINDS)}")
    paths = stages_lib.get(stage).program_fields if stage else ()
    optimizer = None if opt_config is None else ml_collections.FrozenConfigDict(optimizer_key(opt_config))
    return cls(kind=kind, stage=stage, fields=ml_collections.FrozenConfigDict(restrict(config, paths)),
               losses=json.dumps(list(losses)), optimizer=optimizer, mesh=mesh, vmapped=bool(vmapped),
               grafted=tuple(sorted(grafted)))

  def key(self) -> str:
    """`kind:JSON` of every field of the spec (the stage's name first)."""
    mesh = None if self.mesh is None else [list(self.mesh.axis_names), list(self.mesh.devices.shape),
                                           [d.id for d in self.mesh.devices.flat]]
    optimizer = None if self.optimizer is None else ckpt_lib.config_to_dict(self.optimizer.as_configdict())
    value = [self.stage, ckpt_lib.config_to_dict(self.fields.as_configdict()), json.loads(self.losses), optimizer,
             mesh, self.vmapped, list(self.grafted)]
    return self.kind + ":" + json.dumps(value, sort_keys=True, default=str)

  def config(self) -> ml_collections.ConfigDict:
    """The config as the builder sees it: the spec's fields alone (and `optimizer` when the spec has one)."""
    config = self.fields.as_configdict()
    if self.optimizer is not None:
      config.optimizer = self.optimizer.as_configdict()
    config.lock()
    return config


def restrict(config, paths: tuple[str, ...]) -> ml_collections.ConfigDict:
  """A copy of `config` holding only the dotted `paths` (each a field or a group); a program-neutral field
  (`schema`: host, loss or array role) among them is an error, it would split programs that runs share."""
  neutral = set(schema.paths(schema.HOST) + schema.paths(schema.LOSS) + schema.paths(schema.ARRAY))
  out = ml_collections.ConfigDict()
  for path in paths:
    if path in neutral:
      raise ValueError(f"program field {path!r} has a host, loss or array role in the schema: it cannot shape a "
                       f"compiled program")
    *parents, leaf = path.split(".")
    node, target = config, out
    for key in parents:
      node = node[key]
      if key not in target:
        target[key] = ml_collections.ConfigDict()
      target = target[key]
    value = node[leaf]
    target[leaf] = value.copy_and_resolve_references() if isinstance(value, ml_collections.ConfigDict) else value
  return out


def optimizer_key(opt_config) -> dict[str, Any]:
  """The optimizer fields that shape its program (`total_steps` only under a schedule)."""
  fields = ckpt_lib.config_to_dict(opt_config.optimizer)
  if fields.get("schedule", "constant") != "cosine":
    fields.pop("total_steps", None)  # folds of different sizes share the program
  return fields


# --------------------------------------------------------------------------------------------- the builders
def build_train_step(spec: ProgramSpec) -> Callable:
  """The stage's jitted, donated train step (`steps.make_train_step` with the stage's loss and optimizer)."""
  stage, config = stages_lib.get(spec.stage), spec.config()
  model, frozen_model = stage.models(config)
  step = steps.make_train_step(stage.loss(config, model, frozen_model, json.loads(spec.losses)),
                               make_optimizer(config))
  return steps.jit_step(step, spec.mesh, vmapped=spec.vmapped)


def build_init(spec: ProgramSpec) -> Callable:
  """Jitted `(key, example batch) -> variables` of the stage's model (the T-Net's input is the teacher's visual
  embedding). The sub-trees named in `spec.grafted` come from elsewhere: they are zeros here, so XLA drops
  their random initialisation (the student's R3D-18 init took 3 of the 5 s its init program compiled in)."""
  stage = stages_lib.get(spec.stage)
  model, frozen_model = stage.models(spec.config())

  def init(key, batch):
    if stage.init_from_teacher_visual:
      t_out = jax.eval_shape(lambda: frozen_model.init_with_output(jax.random.key(0), batch, train=False)[0])
      variables = model.init(key, jnp.zeros(t_out.visual.shape, jnp.float32))
    else:
      variables = model.init(key, batch, train=False)
    return {collection: {name: jax.tree.map(jnp.zeros_like, tree) if name in spec.grafted else tree
                         for name, tree in trees.items()} for collection, trees in variables.items()}
  return jax.jit(init)


def build_opt_init(spec: ProgramSpec) -> Callable:
  """Jitted `params -> optimizer state` (run eagerly, the init dispatches one program per leaf)."""
  return jax.jit(make_optimizer(spec.config()).init)


# ----------------------------------------------------------------------------------------------- the cache
class Programs:
  """Jitted functions built once per key (what shapes them: stage, model, losses, optimizer, mesh).

  Student programs can hold several distillation losses: `share_losses(configs)` declares that the runs whose
  configs differ only in the loss (`stages.FIELDS.program_neutral`) compile one program with all their losses as
  branches; each run then selects its own (a switch on an array hyperparameter). The configs are not modified.
  """

  def __init__(self) -> None:
    self._built: dict[str, Any] = {}
    self._shared_losses: dict[str, list[dict[str, Any]]] = {}

  def get(self, spec: ProgramSpec, build: Callable[[ProgramSpec], Any]) -> Any:
    """The program of `spec`, built by `build(spec)` the first time it is asked for."""
    name = spec.key()
    if name not in self._built:
      self._built[name] = build(spec)
    return self._built[name]

  def keys(self) -> list[str]:
    """`kind:key` of every program built so far (kinds: init, opt_init, train_step, eval)."""
    return list(self._built)

  def share_losses(self, configs: Iterable[Any]) -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for config in configs:
      losses = groups.setdefault(stages_lib.program_group(config), [])
      own = steps.distill_branch(config.distill)
      if own not in losses:
        losses.append(own)
    self._shared_losses.update({group: losses for group, losses in groups.items() if len(losses) > 1})

  def student_losses(self, config) -> tuple[list[dict[str, Any]], int]:
    """The distillation losses compiled into this run's student program, and the index of its own."""
    own = steps.distill_branch(config.distill)
    losses = self._shared_losses.get(stages_lib.program_group(config), [own])
    if own not in losses:  # declared for other configs of the same group: this one compiles alone
      return [own], 0
    return losses, losses.index(own)


class SavedVariables:
  """Earlier stages' saved variables as host arrays, read once while unchanged on disk (the runs of a sweep
  that share a teacher read it once). Keeps the `capacity` most recently added."""

  def __init__(self, capacity: int = 8):
    self.capacity = capacity
    self._entries: dict[tuple[str, int], Any] = {}

  def load(self, path: str) -> Any:
    path = os.path.abspath(path)
    if not os.path.exists(path):
      return ckpt_lib.load_variables(path)  # FileNotFoundError naming the stage to run first
    key = (path, os.stat(path).st_mtime_ns)
    if key not in self._entries:
      while len(self._entries) >= self.capacity:
        self._entries.pop(next(iter(self._entries)))
      self._entries[key] = jax.tree.map(np.asarray, ckpt_lib.load_variables(path))
    return self._entries[key]


@dataclasses.dataclass
class Context:
  """Everything a process shares between the runs it trains (see the module docstring)."""
  programs: Programs = dataclasses.field(default_factory=Programs)
  saved: SavedVariables = dataclasses.field(default_factory=SavedVariables)
  datasets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # in-memory data sources
