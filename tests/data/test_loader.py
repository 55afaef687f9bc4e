"""grain loader: seeded order, every example once per epoch, sharding partitions, padding and masks."""

import numpy as np
import pytest

from pkdot_jax.data import loader, transforms


def _indices(batches):
  return np.concatenate([b["index"][b["mask"]] for b in batches])


def test_batch_format(tiny_binary):
  _, source = tiny_binary
  batch = next(iter(loader.make_loader(source, batch_size=8, seed=0,
                                       transforms=transforms.video_transforms(train=True))))
  assert batch["video"].dtype == np.float32 and batch["video"].shape == (8, 4, 16, 16, 3)
  assert batch["physio"].dtype == np.float32 and batch["physio"].shape == (8, 256, 2)
  for key in ("label", "subject", "index", "video_id"):
    assert batch[key].dtype == np.int32
  assert batch["mask"].dtype == bool and batch["mask"].all()


def test_deterministic_per_seed_and_each_example_once(tiny_binary):
  _, source = tiny_binary
  subset = np.arange(5, 50)
  make = lambda seed: list(loader.make_loader(source, subset, batch_size=8, seed=seed, num_epochs=2))
  first, again, other = make(1), make(1), make(2)
  assert len(first) == 2 * 6
  for a, b in zip(first, again):
    assert all(np.array_equal(a[k], b[k]) for k in a)
  epoch0, epoch1 = _indices(first[:6]), _indices(first[6:])
  assert np.array_equal(np.sort(epoch0), subset) and np.array_equal(np.sort(epoch1), subset)
  assert not np.array_equal(epoch0, epoch1)  # reshuffled each epoch
  assert not np.array_equal(epoch0, _indices(other[:6]))
  assert first[5]["mask"].sum() == 45 - 5 * 8 and first[5]["index"].shape == (8,)


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_shards_partition(tiny_binary, drop_remainder):
  _, source = tiny_binary
  per_shard = [list(loader.make_loader(source, batch_size=4, seed=3, shard_index=k, shard_count=3,
                                       drop_remainder=drop_remainder)) for k in range(3)]
  assert len({len(b) for b in per_shard}) == 1  # every host steps alike
  seen = [_indices(b) for b in per_shard]
  flat = np.concatenate(seen)
  assert flat.size == np.unique(flat).size  # disjoint
  if drop_remainder:
    assert all(b["mask"].all() and b["index"].shape == (4,) for bs in per_shard for b in bs)
  else:
    assert np.array_equal(np.sort(flat), np.arange(len(source)))  # cover


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_shards_together_are_the_single_process_batches(tiny_binary, drop_remainder):
  """Concatenated in shard order, the shards' batches are the global batches of one process row for row,
  random transforms included (what makes a multi-process run equal a single-process one)."""
  _, source = tiny_binary
  kwargs = dict(batch_size=4, seed=3, drop_remainder=drop_remainder, transforms=transforms.video_transforms(
      train=True, crop=(12, 12), flip=True))
  single = list(loader.make_loader(source, **{**kwargs, "batch_size": 12}))
  shards = [list(loader.make_loader(source, shard_index=k, shard_count=3, **kwargs)) for k in range(3)]
  assert len(single) == len(shards[0])
  for b, whole in enumerate(single):
    for key in whole:
      np.testing.assert_array_equal(np.concatenate([shard[b][key] for shard in shards]), whole[key], err_msg=key)


def test_ragged_last_batch_without_pad(tiny_binary):
  _, source = tiny_binary
  batches = list(loader.make_loader(source, np.arange(10), batch_size=4, shuffle=False, pad=False))
  assert [b["index"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_workers_match_in_process(tiny_binary):
  _, source = tiny_binary
  chain = transforms.video_transforms(train=True, num_frames=2)
  kwargs = dict(batch_size=16, seed=5, transforms=chain)
  inline = list(loader.make_loader(source, worker_count=0, **kwargs))
  workers = list(loader.make_loader(source, worker_count=2, **kwargs))
  assert len(inline) == len(workers)
  for a, b in zip(inline, workers):
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # Pickled through the queues, not grain's shared-memory arrays (whose blocks the resource tracker reports
    # as leaked at exit on Python < 3.13).
    assert all(type(b[k]) is np.ndarray for k in b)


def test_bad_arguments(tiny_binary):
  _, source = tiny_binary
  with pytest.raises(ValueError, match="indices"):
    loader.make_loader(source, [0, 999], batch_size=2)
  with pytest.raises(ValueError, match="shard_index"):
    loader.make_loader(source, batch_size=2, shard_index=2, shard_count=2)
  with pytest.raises(ValueError, match="no full batch"):
    loader.make_loader(source, np.arange(5), batch_size=8, drop_remainder=True)
