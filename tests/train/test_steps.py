"""The train step itself: eight devices == one device, the non-finite guard, checkpoints surviving a crash."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pkdot_jax import models
from pkdot_jax.train import checkpoint, parallel, steps
from pkdot_jax.train.state import TrainState

# SGD: Adam would turn the rounding noise of zero-gradient leaves (attention key biases) into lr-sized steps
# (see test_pipeline.py).
TX = optax.sgd(0.05)


def _student_setup(batch_size=16):
  cfg = models.default_config("tiny")
  cfg.input_shapes.video = (4, 16, 16, 3)
  cfg.input_shapes.physio = (512, 2)
  batch = models.dummy_batch(cfg, batch_size)
  batch["label"] = (jnp.arange(batch_size) % 2).astype(jnp.int32)
  teacher, student = models.build_teacher(cfg), models.build_student(cfg)
  teacher_vars = models.init_variables(teacher, batch, seed=1)
  student_vars = models.init_variables(student, {"video": batch["video"]}, seed=2)
  loss_fn = steps.student_loss(student, teacher, "classification",
                               {"method": "pkdot", "kwargs": {"k": 4, "epsilon": 0.05}})
  state = TrainState.create(params=student_vars["params"], batch_stats=student_vars["batch_stats"],
                            opt_state=TX.init(student_vars["params"]), frozen={"teacher": teacher_vars},
                            hparams={"distill_weight": 0.6})
  return state, jax.tree.map(np.asarray, batch), loss_fn


def test_one_student_step_on_eight_devices_equals_one_device():
  """Global-batch semantics: BatchNorm statistics, the B x B PKDOT matrices and the gradient mean are over the
  whole batch whether it lives on one device or is split over eight."""
  state, batch, loss_fn = _student_setup()
  results = {}
  for num_devices in (1, 8):
    mesh = parallel.make_mesh(num_devices)
    step = steps.jit_step(steps.make_train_step(loss_fn, TX), mesh)
    placed = parallel.replicate(jax.tree.map(np.array, state), mesh)  # fresh buffers (the step donates them)
    global_batch = parallel.global_batch(batch, mesh)
    assert len(global_batch["video"].sharding.device_set) == num_devices
    new_state, metrics = step(placed, global_batch, jax.random.key_data(jax.random.key(0)))
    assert float(metrics["finite"]) == 1.0 and float(metrics["ot_converged"]) == 1.0
    results[num_devices] = (jax.tree.map(np.asarray, new_state.params), float(metrics["loss"]))
  assert results[8][1] == pytest.approx(results[1][1], rel=1e-5)
  for a, b in zip(jax.tree.leaves(results[8][0]), jax.tree.leaves(results[1][0])):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_non_finite_step_leaves_state_unchanged():
  def loss_fn(params, state, batch, rng):
    loss = jnp.sum(params["w"] * batch["x"])
    return loss, (state.batch_stats, {"task_loss": loss})

  tx = optax.sgd(0.1)
  state = TrainState.create(params={"w": jnp.ones(3)}, batch_stats={}, opt_state=tx.init({"w": jnp.ones(3)}))
  step = jax.jit(steps.make_train_step(loss_fn, tx))
  good, metrics = step(state, {"x": jnp.ones(3)}, jax.random.key_data(jax.random.key(0)))
  assert float(metrics["finite"]) == 1.0 and int(good.step) == 1
  np.testing.assert_allclose(good.params["w"], 0.9)
  bad, metrics = step(good, {"x": jnp.array([1.0, jnp.nan, 1.0])}, jax.random.key_data(jax.random.key(0)))
  assert float(metrics["finite"]) == 0.0
  assert int(bad.step) == 1
  np.testing.assert_allclose(bad.params["w"], 0.9)  # the NaN never reached the parameters


def test_crash_mid_save_leaves_previous_checkpoint_usable(tmp_path):
  """A save interrupted before orbax's final rename leaves only a temporary directory, which restore ignores."""
  ck = checkpoint.Checkpointer(str(tmp_path))
  ck.save(3, {"w": jnp.arange(4.0)})
  ck.wait()
  ck.close()
  # What a process killed while writing step 6 leaves behind: orbax's temporary directory, never renamed.
  partial = tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp-1234"
  partial.mkdir()
  (partial / "default").mkdir()
  (partial / "default" / "_METADATA").write_text("{truncated")
  ck = checkpoint.Checkpointer(str(tmp_path))
  assert ck.latest_step() == 3
  restored = ck.restore_latest({"w": jnp.zeros(4)})
  np.testing.assert_array_equal(restored["w"], np.arange(4.0))
  ck.close()


def test_distillation_term_names_mismatched_sizes():
  out = models.ModelOutput(prediction=jnp.zeros((4, 2)), embedding=jnp.zeros((4, 8)), visual=jnp.zeros((4, 8)),
                           privileged=None, aux={})
  with pytest.raises(ValueError, match=r"same size.*\(4, 8\).*\(4, 16\)"):
    steps.distillation_term("fitnets", {}, out, jnp.zeros((4, 16)), jnp.zeros((4, 2)), {}, "classification")


@pytest.fixture(scope="module")
def branch_setup():
  """The branch tests' models, initial variables and batches, built once for the module (only `state(...)`'s
  fresh states are trained)."""
  return _branch_setup()


def _branch_setup(batch_size=8):
  """A multitask teacher, a student, and a batch carrying the teacher cache's fields (incl. MT-PKDOT heads)."""
  cfg = models.default_config("tiny")
  cfg.multitask = True
  cfg.fusion.kind, cfg.privileged_backbone = "concat", "cnn1d"  # the smallest programs (compile time)
  cfg.input_shapes.video = (3, 16, 16, 3)
  cfg.input_shapes.physio = (512, 2)
  batch = models.dummy_batch(cfg, batch_size)
  batch["label"] = (jnp.arange(batch_size) % 2).astype(jnp.int32)
  batch["mask"] = jnp.ones(batch_size, bool)
  teacher, student = models.build_teacher(cfg), models.build_student(cfg)
  teacher_vars = models.init_variables(teacher, batch, seed=1)
  student_vars = models.init_variables(student, {"video": batch["video"]}, seed=2)
  t_out = jax.jit(lambda v, b: teacher.apply(v, b, train=False))(teacher_vars, batch)
  head_embeddings, head_predictions = steps.teacher_heads(t_out)
  cached = dict(batch, teacher_embedding=t_out.embedding, teacher_prediction=t_out.prediction,
                teacher_head_embeddings=jnp.moveaxis(head_embeddings, 0, 1),
                teacher_head_predictions=jnp.moveaxis(head_predictions, 0, 1))

  tx = optax.sgd(0.05)

  def state(branch, task_weight=1.0):
    return TrainState.create(params=student_vars["params"], batch_stats=student_vars["batch_stats"],
                             opt_state=tx.init(student_vars["params"]), frozen={"teacher": teacher_vars},
                             hparams={"distill_weight": 0.6, "task_weight": task_weight, "distill_branch": branch})

  return student, teacher, tx, state, jax.tree.map(np.asarray, batch), jax.tree.map(np.asarray, cached)


BRANCHES = ({"method": "hinton_kd", "kwargs": {"temperature": 4.0}},  # logits
            {"method": "pkdot", "kwargs": {"k": 3, "epsilon": 0.05}, "mt_pkdot": True})  # embeddings, heads


def test_loss_branches_equal_their_single_loss_programs(branch_setup):
  """One program holding several distillation losses (a switch on hparams["distill_branch"]) gives, for each
  branch, the loss and update of the program compiled for that loss alone; also when the members are vmapped
  (where the switch becomes a select over every branch); and MT-PKDOT from the cached heads equals MT-PKDOT
  with the teacher run inside the step."""
  student, teacher, tx, state, batch, cached = branch_setup
  key = jax.random.key_data(jax.random.key(0))
  shared = jax.jit(steps.make_train_step(steps.student_loss(student, teacher, "classification",
                                                            {"branches": BRANCHES}), tx))
  singles = []
  for i, branch in enumerate(BRANCHES):
    single = jax.jit(steps.make_train_step(steps.student_loss(student, teacher, "classification", branch), tx))
    task_weight = 0.8 if branch.get("mt_pkdot") else 1.0
    ref_state, ref = single(state(0, task_weight), cached, key)
    new_state, got = shared(state(i, task_weight), cached, key)
    assert float(got["distill_loss"]) == pytest.approx(float(ref["distill_loss"]), rel=1e-5)
    assert float(got["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-5)
    assert float(ref["distill_loss"]) > 0
    for a, b in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(ref_state.params)):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    singles.append((ref_state, ref))
    if branch.get("mt_pkdot"):  # the teacher inside the step instead of the cached heads
      _, in_step = single(state(0, task_weight), batch, key)
      assert float(in_step["loss"]) == pytest.approx(float(ref["loss"]), rel=1e-5)

  stacked_state = jax.tree.map(lambda *xs: np.stack(xs), *[state(i, 0.8 if b.get("mt_pkdot") else 1.0)
                                                              for i, b in enumerate(BRANCHES)])
  stacked_batch = jax.tree.map(lambda x: np.stack([x] * len(BRANCHES)), cached)
  vmapped = jax.jit(jax.vmap(steps.make_train_step(steps.student_loss(
      student, teacher, "classification", {"branches": BRANCHES}), tx)))
  _, metrics = vmapped(stacked_state, stacked_batch, np.stack([key] * len(BRANCHES)))
  assert np.all(np.asarray(metrics["finite"]) == 1.0)
  for i, (_, ref) in enumerate(singles):
    assert float(metrics["loss"][i]) == pytest.approx(float(ref["loss"]), rel=1e-5)


def test_extra_terms_add_their_weighted_losses_and_gradients(branch_setup):
  """A branch with extra terms (fixed weights) is the sum of its terms: its loss is the sum of the single-loss
  programs' weighted values and, with SGD, its update the sum of their updates; the OT diagnostics come from
  an extra PKDOT term too; with the extra terms in a shared program the switch still selects them."""
  student, teacher, tx, state, _, cached = branch_setup
  key = jax.random.key_data(jax.random.key(0))
  hinton, pkdot = BRANCHES[0], {"method": "pkdot", "kwargs": {"k": 3, "epsilon": 0.05}}
  combined = {**hinton, "extra": [{"method": "pkdot", "weight": 0.5, "kwargs": pkdot["kwargs"]}]}

  def run(branch, distill_weight, branches=None, index=0):
    s = state(index, task_weight=0.0)
    s = s.replace(hparams={**s.hparams, "distill_weight": distill_weight})
    step = steps.make_train_step(steps.student_loss(student, teacher, "classification",
                                                    {"branches": branches or (branch,)}), tx)
    return jax.jit(step)(s, cached, key)

  state_h, m_h = run(hinton, 0.6)
  state_p, m_p = run(pkdot, 0.5)
  state_c, m_c = run(combined, 0.6)
  assert float(m_c["loss"]) == pytest.approx(0.6 * float(m_h["distill_loss"]) + 0.5 * float(m_p["distill_loss"]),
                                             rel=1e-5)
  assert float(m_c["extra_loss"]) == pytest.approx(0.5 * float(m_p["distill_loss"]), rel=1e-5)
  assert float(m_c["ot_iterations"]) == float(m_p["ot_iterations"]) > 0
  start = state(0).params
  # On host arrays: the differences are not worth a compiled program per leaf shape.
  for c, h, p, s in zip(*(map(np.asarray, jax.tree.leaves(x))
                          for x in (state_c.params, state_h.params, state_p.params, start))):
    np.testing.assert_allclose(c - s, (h - s) + (p - s), rtol=1e-4, atol=1e-6)
  _, m_shared = run(None, 0.6, branches=(BRANCHES[1], combined), index=1)
  assert float(m_shared["loss"]) == pytest.approx(float(m_c["loss"]), rel=1e-5)


def test_distill_branch_reads_extra_terms_from_configs():
  """The branch a config compiles holds its extra terms (plain values, weights as floats); a config without
  them has none, so configs saved before the field existed match."""
  from pkdot_jax.study import sweep
  from pkdot_jax import configs
  config = configs.load("synthetic:demo")
  assert steps.distill_branch(config.distill)["extra"] == []
  config = sweep.apply_overrides(config, {"method": "pkdot_plus_gd"})
  extra = steps.distill_branch(config.distill)["extra"]
  assert extra == [{"method": "generalized_distillation", "weight": 1.0,
                    "kwargs": {"temperature": 2.0, "imitation": 0.5}}]
  assert steps.branch_methods(steps.distill_branch(config.distill)) == ["pkdot", "generalized_distillation"]
