"""Evaluation of a stage's members on a whole split, and the teacher cache built from the same programs.

Every example of a split is scored exactly once: evaluation batches are padded (`mask = False`) and, in a
multi-process job, each process reads its shard of every batch; the outputs of the global batch and the
process-local fields (mask, labels, indices) are gathered alike, so they line up row for row.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from pkdot_jax import metrics as metrics_lib
from pkdot_jax.train import parallel
from pkdot_jax.train import stages as stages_lib
from pkdot_jax.train.programs import Programs, ProgramSpec

_FIELDS = ("mask", "label", "valence_arousal", "video_id", "index")


def eval_program(stage_name: str, config, vmapped: bool, programs: Programs) -> Callable:
  """Jitted `(variables, frozen, batch) -> outputs` of a stage in eval mode; over members when `vmapped`."""
  return programs.get(ProgramSpec.of("eval", stage_name, config, vmapped=vmapped), build_eval)


def build_eval(spec: ProgramSpec) -> Callable:
  """The evaluation program of `spec` (its stage's `evaluate`), built from the spec alone."""
  stage, config = stages_lib.get(spec.stage), spec.config()
  model, frozen_model = stage.models(config)
  fn = stage.evaluate(config, model, frozen_model)
  return parallel.over_members(fn, (0, 0, None)) if spec.vmapped else jax.jit(fn)


def outputs_of_split(eval_fn, variables, frozen, data, split: str, batch_size: int, mesh, member_axis: bool
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(outputs, fields) of every evaluation batch of a split, concatenated over batches and processes.

  Outputs have a leading member axis when `member_axis`; fields (mask, label, ...) are per example."""
  outputs: dict[str, list[np.ndarray]] = {}
  fields: dict[str, list[np.ndarray]] = {}
  for local_batch in data.eval_batches(split, batch_size):
    out = eval_fn(variables, frozen, parallel.global_batch(local_batch, mesh))
    for key, value in parallel.to_host(out).items():
      outputs.setdefault(key, []).append(value)
    local = {key: local_batch[key] for key in _FIELDS if key in local_batch}
    for key, value in parallel.gather_local(local).items():
      fields.setdefault(key, []).append(value)
  axis = 1 if member_axis else 0
  return ({k: np.concatenate(v, axis=axis) for k, v in outputs.items()},
          {k: np.concatenate(v) for k, v in fields.items()})


def evaluate(eval_fn, variables, frozen, data, split: str, config, mesh, num_members: int, vmapped: bool
             ) -> list[dict[str, Any]]:
  """Metrics of every member on a whole split (the padding masked out)."""
  outputs, fields = outputs_of_split(eval_fn, variables, frozen, data, split, config.eval_batch_size, mesh,
                                     vmapped)
  mask = fields["mask"].astype(bool)
  results = []
  for m in range(num_members):
    member = {k: (v[m] if vmapped else v)[mask] for k, v in outputs.items()}
    if "squared_error" in member:
      results.append({"tnet_mse": float(member["squared_error"].mean()), "num_examples": int(mask.sum())})
    elif config.model.task == "classification":
      results.append(metrics_lib.classification_metrics(member["prediction"], fields["label"][mask]))
    else:
      results.append(metrics_lib.regression_metrics(member["prediction"], fields["valence_arousal"][mask],
                                                    fields["video_id"][mask]))
  return results


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


def teacher_cache(frozen_teacher, data, config, mesh, vmapped: bool, need_heads: bool,
                  programs: Programs, source: str) -> TeacherCache:
  """The teacher's outputs on every training example (all processes' shards: a process may train on any);
  `source`: the stage that trained it, whose evaluation program computes them."""
  if need_heads and not config.model.multitask:
    raise ValueError("MT-PKDOT needs a teacher with per-modality heads: set config.model.multitask=True")
  eval_fn = eval_program(source, config, vmapped, programs)
  names = {"embedding": "teacher_embedding", "prediction": "teacher_prediction"}
  if need_heads:
    names.update(head_embeddings="teacher_head_embeddings", head_predictions="teacher_head_predictions")
  outputs, fields = outputs_of_split(eval_fn, parallel.replicate(frozen_teacher, mesh), None, data, "train",
                                     config.eval_batch_size, mesh, vmapped)
  keep = fields["mask"].astype(bool)
  axis = 1 if vmapped else 0
  index = fields["index"][keep]
  return TeacherCache(position={int(i): p for p, i in enumerate(index)},
                      fields={field: np.compress(keep, outputs[name], axis=axis) for name, field in names.items()},
                      vmapped=vmapped)
