"""The one train-step builder and the stage losses.

Every stage is a pure function `(state, batch, rng) -> (state, metrics)`, jitted with the state donated. The
stages differ only in their loss function `(params, state, batch, rng) -> (loss, (batch_stats, metrics))`:

- `supervised_loss`: teacher training and unimodal pretraining (task loss; MT-PKDOT teachers add their
  per-modality heads and the stage-1 cosine alignment of the adapters to the joint embedding);
- `tnet_loss`: T-Net fitted on the frozen teacher's (visual -> privileged) embedding pairs, MSE or MMD;
- `student_loss`: task loss + weight x a registered distillation loss against the frozen teacher, which runs
  inside the step in eval mode under stop-gradient (or comes from the teacher cache as batch fields);
  MT-PKDOT picks, per batch, the teacher head with the lowest task loss. Several losses can share one program
  (a switch on `state.hparams["distill_branch"]`).

Teacher variables live in `state.frozen` (an argument, never a captured constant).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from pkdot_jax import errors, losses
from pkdot_jax.train import checkpoint as ckpt_lib
from pkdot_jax.train import parallel
from pkdot_jax.train.state import TrainState

LossFn = Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]


# ----------------------------------------------------------------------------------------------- task losses
def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  if mask is None:
    return values.mean()
  mask = mask.astype(values.dtype)
  return (values * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def ccc_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """1 - CCC averaged over output dimensions, with batch moments (the usual valence/arousal loss)."""
  x, y = predictions.astype(jnp.float32), targets.astype(jnp.float32)
  mx, my = x.mean(0), y.mean(0)
  vx, vy = x.var(0), y.var(0)
  cov = ((x - mx) * (y - my)).mean(0)
  return jnp.mean(1.0 - 2.0 * cov / (vx + vy + (mx - my) ** 2 + 1e-8))


def task_loss(predictions: jax.Array, batch: dict[str, jax.Array], task: str) -> jax.Array:
  """Cross-entropy on integer labels (classification) or 1 - CCC on valence/arousal (regression)."""
  predictions = predictions.astype(jnp.float32)
  if task == "classification":
    per_example = optax.softmax_cross_entropy_with_integer_labels(predictions, batch["label"])
    return _masked_mean(per_example, batch.get("mask"))
  if task == "regression":
    return ccc_loss(predictions, batch["valence_arousal"])
  raise errors.ConfigError(f"unknown task {task!r}; expected 'classification' or 'regression'")


# ------------------------------------------------------------------------------------------- model plumbing
def _apply(model, params, batch_stats, batch, train: bool, rng):
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  if train:
    out, updates = model.apply(variables, batch, train=True, mutable=["batch_stats"], rngs={"dropout": rng})
    return out, updates.get("batch_stats", batch_stats)
  return model.apply(variables, batch, train=False), batch_stats


def frozen_forward(model, frozen_variables, batch) -> Any:
  """A frozen model as a pure function: eval mode, no gradient."""
  out = model.apply(frozen_variables, batch, train=False)
  return jax.tree.map(jax.lax.stop_gradient, out)


# ----------------------------------------------------------------------------------------------- stage losses
def supervised_loss(model, task: str, *, mt_heads: bool = False, align_weight: float = 1.0) -> LossFn:
  """Task loss of a teacher or unimodal model; with `mt_heads`, MT-PKDOT's per-modality heads and adapters."""

  def loss_fn(params, state: TrainState, batch, rng):
    out, batch_stats = _apply(model, params, state.batch_stats, batch, True, rng)
    loss = task_loss(out.prediction, batch, task)
    metrics = {"task_loss": loss}
    if mt_heads:
      for head in ("visual", "privileged"):
        head_loss = task_loss(out.aux[head], batch, task)
        metrics[f"{head}_head_loss"] = head_loss
        loss = loss + head_loss
      # Stage-1 alignment (MT-PKDOT): adapters pulled towards the joint embedding with a cosine loss.
      joint = jax.lax.stop_gradient(out.embedding.astype(jnp.float32))
      align: Any = 0.0
      for name in ("visual_embedding_adapted", "privileged_embedding_adapted"):
        align = align + jnp.mean(1.0 - optax.cosine_similarity(out.aux[name].astype(jnp.float32), joint))
      metrics["align_loss"] = align
      loss = loss + align_weight * align
    metrics["loss"] = loss
    return loss, (batch_stats, metrics)

  return loss_fn


def tnet_loss(tnet, teacher, objective: str = "mse") -> LossFn:
  """T-Net regression from the frozen teacher's visual embedding to its privileged embedding."""
  if objective not in ("mse", "mmd", "mse+mmd"):
    raise errors.ConfigError(f"tnet objective must be 'mse', 'mmd' or 'mse+mmd', got {objective!r}")

  def loss_fn(params, state: TrainState, batch, rng):
    del rng
    t_out = frozen_forward(teacher, state.frozen["teacher"], batch)
    visual, target = t_out.visual.astype(jnp.float32), t_out.privileged.astype(jnp.float32)
    predicted = tnet.apply({"params": params}, visual).astype(jnp.float32)
    metrics = {}
    loss: Any = 0.0
    if "mse" in objective:
      metrics["mse"] = jnp.mean((predicted - target) ** 2)
      loss = loss + metrics["mse"]
    if "mmd" in objective:
      metrics["mmd"] = losses.get("mmd")(predicted, target)
      loss = loss + metrics["mmd"]
    metrics["loss"] = loss
    return loss, (state.batch_stats, metrics)

  return loss_fn


def distillation_term(method: str, kwargs: dict[str, Any], student_out, teacher_embedding, teacher_prediction,
                      batch, task: str) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Value of the registered loss `method` between student and teacher, plus solver diagnostics if any."""
  spec = losses.spec(method)
  if spec.inputs == "embeddings":
    student_in, teacher_in = student_out.embedding, teacher_embedding
  else:
    student_in, teacher_in = student_out.prediction, teacher_prediction
  return spec.apply(student_in, teacher_in, task=task, labels=batch.get("label"), **kwargs)


def distill_branch(d: Any) -> dict[str, Any]:
  """One distillation loss as the student program compiles it: {"method", "kwargs", "mt_pkdot", "extra"} (from
  a dict or a ConfigDict with at least "method"); runs are matched to program branches by equality of these.
  "kwargs": `method_kwargs[method]` (the experiment's arguments of that loss) updated with `kwargs` (the run's).

  "extra": further registered losses added to the same student loss, each {"method", "weight", "kwargs"}, with
  its weight fixed in the program (e.g. PKDOT + generalized distillation)."""
  d = ckpt_lib.config_to_dict(d)  # plain JSON values from a ConfigDict or a dict
  extra = [{"method": t["method"], "weight": float(t.get("weight", 1.0)), "kwargs": dict(t.get("kwargs") or {})}
           for t in d.get("extra") or ()]
  method = d.get("method", "none")
  # The method's arguments: this experiment's for that method (distill.method_kwargs), then the run's own.
  kwargs = {**dict((d.get("method_kwargs") or {}).get(method) or {}), **dict(d.get("kwargs") or {})}
  return {"method": method, "kwargs": kwargs,
          "mt_pkdot": bool(d.get("mt_pkdot", False)), "extra": extra}


def branch_methods(branch: dict[str, Any]) -> list[str]:
  """Every registered loss a branch computes: its own method and its extra terms'."""
  return [name for name in [branch["method"], *(t["method"] for t in branch["extra"])] if name != "none"]


def _branches(distill: dict[str, Any]) -> list[dict[str, Any]]:
  return [distill_branch(b) for b in (distill.get("branches") or [distill])]


def _teacher_targets(teacher, state: TrainState, batch, need_heads: bool):
  """Joint teacher (embedding, prediction) and, for MT-PKDOT, the stacked heads ((3, B, D), (3, B, K)).

  From the teacher cache's batch fields when present, else from the frozen teacher run inside the step."""
  if "teacher_embedding" in batch:
    heads = None
    if need_heads:
      heads = (jnp.moveaxis(batch["teacher_head_embeddings"], 1, 0),
               jnp.moveaxis(batch["teacher_head_predictions"], 1, 0))
    return batch["teacher_embedding"], batch["teacher_prediction"], heads
  t_out = frozen_forward(teacher, state.frozen["teacher"], batch)
  return t_out.embedding, t_out.prediction, (teacher_heads(t_out) if need_heads else None)


def teacher_heads(t_out) -> tuple[jax.Array, jax.Array]:
  """An MT-PKDOT teacher's (visual, privileged, joint) embeddings and predictions, stacked: (3, B, .)."""
  embeddings = jnp.stack([t_out.aux["visual_embedding_adapted"], t_out.aux["privileged_embedding_adapted"],
                          t_out.embedding])
  predictions = jnp.stack([t_out.aux["visual"], t_out.aux["privileged"], t_out.prediction])
  return embeddings, predictions


def mt_select_head(head_embeddings, head_predictions, batch, task: str) -> tuple[jax.Array, jax.Array]:
  """MT-PKDOT: the teacher head (visual / privileged / joint) with the lowest task loss on this batch."""
  head_losses = jax.vmap(lambda p: task_loss(p, batch, task))(head_predictions)
  best = jnp.argmin(head_losses)
  return head_embeddings[best], head_predictions[best]


def student_loss(student, teacher, task: str, distill: dict[str, Any]) -> LossFn:
  """task_weight x task loss + distill_weight x a registered distillation loss against the frozen teacher.

  `distill` = {"method": registered name or "none", "kwargs": dict, "task_weight": float, "mt_pkdot": bool,
  "extra": ({"method", "weight", "kwargs"}, ...) further terms with fixed weights}, or
  {"branches": ({"method", "kwargs", "mt_pkdot", "extra"}, ...), ...} to compile several distillation losses into one
  program: the step runs branch `state.hparams["distill_branch"]` (`lax.switch`: on CPUs only that branch
  executes; under vmap, as on accelerators with several members, every branch is computed and one selected).
  The weights are arrays in `state.hparams` ("distill_weight"; "task_weight", defaulting to
  distill["task_weight"] or 1), so runs that differ only in method or weights share one compiled program.
  The teacher comes either from `state.frozen["teacher"]` (forward inside the step) or from cached fields of the
  batch (`teacher_embedding`, `teacher_prediction`, and for MT-PKDOT `teacher_head_embeddings` (B, 3, D),
  `teacher_head_predictions` (B, 3, K); filled by the trainer's teacher cache).
  """
  branches = _branches(distill)
  default_task_weight = float(distill.get("task_weight", 1.0))
  distilling = any(branch_methods(b) for b in branches)
  need_heads = any(b["mt_pkdot"] for b in branches)
  with_ot = any(losses.spec(name).returns_aux for b in branches for name in branch_methods(b))
  with_extra = any(b["extra"] for b in branches)

  def branch_fn(branch):
    def fn(out, t_embedding, t_prediction, heads, batch):
      if branch["mt_pkdot"]:
        t_embedding, t_prediction = mt_select_head(*heads, batch, task)
      terms = [(branch["method"], branch["kwargs"], None)] if branch["method"] != "none" else []
      terms += [(t["method"], t["kwargs"], t["weight"]) for t in branch["extra"]]
      value, extra, solver = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), []
      for method, kwargs, weight in terms:
        term, term_metrics = distillation_term(method, kwargs, out, t_embedding, t_prediction, batch, task)
        if weight is None:
          value = term
        else:
          extra = extra + weight * term
        if "ot_converged" in term_metrics:
          solver.append(term_metrics)
      metrics = {}
      if with_ot:  # every branch returns the same metrics; 0 iterations where no solver ran
        metrics = {"ot_converged": jnp.ones((), jnp.float32), "ot_iterations": jnp.zeros((), jnp.float32)}
        for m in solver:
          metrics = {"ot_converged": jnp.minimum(metrics["ot_converged"], m["ot_converged"]),
                     "ot_iterations": jnp.maximum(metrics["ot_iterations"], m["ot_iterations"])}
      return value, extra, metrics
    return fn

  fns = [branch_fn(b) for b in branches]

  def loss_fn(params, state: TrainState, batch, rng):
    out, batch_stats = _apply(student, params, state.batch_stats, batch, True, rng)
    task_value = task_loss(out.prediction, batch, task)
    metrics = {"task_loss": task_value}
    loss = state.hparams.get("task_weight", default_task_weight) * task_value
    if distilling:
      t_embedding, t_prediction, heads = _teacher_targets(teacher, state, batch, need_heads)
      args = (out, t_embedding, t_prediction, heads, batch)
      if len(fns) == 1:
        value, extra, solver = fns[0](*args)
      else:
        value, extra, solver = jax.lax.switch(state.hparams["distill_branch"].astype(jnp.int32), fns, *args)
      metrics.update(solver)
      metrics["distill_loss"] = value
      loss = loss + state.hparams["distill_weight"] * value
      if with_extra:
        metrics["extra_loss"] = extra  # the weighted sum of the branch's extra terms
        loss = loss + extra
    metrics["loss"] = loss
    return loss, (batch_stats, metrics)

  return loss_fn


# --------------------------------------------------------------------------------------------- step builder
def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, *, check_finite: bool = True) -> Callable:
  """`(state, batch, rng) -> (state, metrics)`: gradients of the global-batch loss (XLA all-reduces them),
  applied with the optimizer `tx`.

  With `check_finite`, a non-finite loss or gradient leaves the state unchanged and reports `finite = 0`, so
  the loop can stop naming the step and the term without a NaN ever reaching the parameters.
  """

  def step(state: TrainState, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (batch_stats, metrics)), grads = grad_fn(state.params, state, batch, rng)
    metrics["grad_norm"] = optax.tree.norm(grads)
    if not check_finite:
      return state.apply_gradients(tx, grads, batch_stats), metrics
    # One scalar test (an overflowing norm is as fatal as a NaN) and a conditional, rather than a select over
    # every leaf: the latter doubled the XLA:CPU compile time of the tiny teacher step.
    finite = jnp.isfinite(loss) & jnp.isfinite(metrics["grad_norm"])
    metrics["finite"] = finite.astype(jnp.float32)
    new_state = jax.lax.cond(finite, lambda: state.apply_gradients(tx, grads, batch_stats), lambda: state)
    return new_state, metrics

  return step


def jit_step(step: Callable, mesh=None, *, vmapped: bool = False) -> Callable:
  """Jits a step with the state donated; on a mesh the state stays replicated and the batch sharded.

  `vmapped`: the state, batch and key carry a leading member axis (`parallel.over_members`)."""
  jit_kwargs: dict[str, Any] = {"donate_argnums": (0,)}
  if mesh is not None:
    rep = parallel.replicated(mesh)
    jit_kwargs["out_shardings"] = (rep, rep)
  if vmapped:
    return parallel.over_members(step, (0, 0, 0), **jit_kwargs)
  return jax.jit(step, **jit_kwargs)


def eval_outputs(out) -> dict[str, jax.Array]:
  """The outputs an evaluation keeps from a ModelOutput: predictions, embeddings, the MT-PKDOT teacher's heads
  (B, 3, .) as `head_embeddings` / `head_predictions`."""
  result = {"prediction": out.prediction.astype(jnp.float32), "embedding": out.embedding.astype(jnp.float32)}
  for name in ("visual", "privileged"):
    if getattr(out, name, None) is not None:
      result[name] = getattr(out, name).astype(jnp.float32)
  if out.aux and "visual_embedding_adapted" in out.aux:  # an MT-PKDOT teacher: its heads, batch axis first
    embeddings, predictions = teacher_heads(out)
    result["head_embeddings"] = jnp.moveaxis(embeddings, 0, 1).astype(jnp.float32)
    result["head_predictions"] = jnp.moveaxis(predictions, 0, 1).astype(jnp.float32)
  return result
