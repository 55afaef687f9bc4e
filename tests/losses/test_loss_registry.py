"""The loss registry: specs declared with the functions, and the method list derived from it."""

import jax.numpy as jnp
import pytest

from pkdot_jax import losses
from pkdot_jax.losses import registry
from pkdot_jax.study import methods

# `pkdot demo --all`'s rows before the list was derived from the registry: the derived list keeps them, in order.
FULL_COMPARISON_ROWS = ("video_only", "task_only", "pkdot", "mt_pkdot", "generalized_distillation", "hinton_kd",
                        "dkd", "fitnets", "feature_mse", "mars", "privileged_cosine", "pkt", "rkd", "sp", "cc",
                        "mmd")


@pytest.fixture
def scratch_registry(monkeypatch):
  """The loss registry and the method presets, restored after the test."""
  monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))  # pylint: disable=protected-access
  monkeypatch.setattr(methods, "METHODS", dict(methods.METHODS))


def test_every_registered_loss_is_its_public_function():
  for name in losses.available():
    fn = losses.get(name)
    assert getattr(losses, name) is fn, name
    assert losses.spec(name).name == name


def test_full_comparison_is_every_loss_the_trainer_can_feed():
  rows = methods.ALL_METHODS
  assert rows == methods.full_comparison()
  assert rows[:2] == (methods.VIDEO_ONLY, methods.CONTROL)
  fed = [n for n in losses.available() if losses.spec(n).inputs in ("embeddings", "logits")]
  assert set(fed) == set(losses.trainable())
  assert set(fed) <= set(rows) and "nst" not in rows
  assert len(rows) == len(set(rows))
  assert tuple(r for r in rows if r in FULL_COMPARISON_ROWS) == FULL_COMPARISON_ROWS
  for name in rows[2:]:  # every row is a preset of a registered loss
    assert methods.overrides(name)["distill.method"] in losses.available(), name


def test_a_registered_loss_joins_the_registry_and_the_full_comparison(scratch_registry):
  before = methods.full_comparison()

  @losses.register("scratch_l1", inputs="embeddings", same_dim=True)
  def scratch_l1(student, teacher):
    return jnp.mean(jnp.abs(student - teacher))

  @losses.register("scratch_maps", inputs="feature_maps")
  def scratch_maps(student, teacher):
    return jnp.mean(student) - jnp.mean(teacher)

  assert losses.get("scratch_l1") is scratch_l1
  assert {"scratch_l1", "scratch_maps"} <= set(losses.available())
  assert losses.trainable()[-1] == "scratch_l1"
  assert methods.full_comparison() == (*before, "scratch_l1")  # appended; a feature-map loss is not fed
  assert methods.overrides("scratch_l1") == {"distill.method": "scratch_l1", "distill.weight": 1.0,
                                             "distill.kwargs": {}}
  value, aux = losses.spec("scratch_l1").apply(jnp.ones((4, 3)), jnp.zeros((4, 3)), task="regression")
  assert float(value) == 1.0 and aux == {}
  with pytest.raises(ValueError, match="same size"):
    losses.spec("scratch_l1").check("regression", (4, 3), (4, 5))


def test_registering_twice_or_with_unknown_inputs_is_refused(scratch_registry):
  with pytest.raises(ValueError, match=r"loss 'rkd' is registered twice: pkdot_jax\.losses\.baselines\.rkd"):
    losses.register("rkd", inputs="embeddings")(lambda s, t: 0.0)
  with pytest.raises(ValueError, match=r"inputs must be one of .*'embeddings'.*got 'pixels'"):
    losses.register("toy", inputs="pixels")  # type: ignore[arg-type]
  assert "toy" not in losses.available()
