"""The members of a run: the (seed, distillation weight) pairs of one config trained side by side.

Several members train as one vmapped program on accelerators, or as the single-member program per member on
CPUs (`parallel.over_members`): every array of the state gets a leading member axis, every member reads its
own data order. With one member nothing is vmapped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from pkdot_jax.train import parallel
from pkdot_jax.train import stages as stages_lib


@dataclasses.dataclass
class Members:
  """The runs trained together: one per (seed, distillation weight)."""
  seeds: tuple[int, ...]
  weights: tuple[float, ...]

  @classmethod
  def from_config(cls, config, stage_name: str | None = None) -> "Members":
    """One member per (distillation weight, seed); a stage that does not distil (`Stage.distills`) has one
    member per seed (the distillation weights are the student's). No stage: the distilling stages' members."""
    seeds = tuple(int(s) for s in config.seeds)
    weight = config.distill.weight
    weights = tuple(float(w) for w in (weight if isinstance(weight, (list, tuple)) else [weight]))
    if stage_name is not None and not stages_lib.get(stage_name).distills:
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


def member(tree: Any, m: int, vmapped: bool) -> Any:
  """Member `m` of a tree with a leading member axis (`vmapped`), or the tree itself."""
  return jax.tree.map(lambda x: x[m], tree) if vmapped else tree
