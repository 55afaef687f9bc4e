"""grain loader: seeded order, every example once per epoch, sharding partitions, padding and masks."""

import itertools
import multiprocessing
import os
import pathlib
import subprocess
import sys
import zlib

import numpy as np
import pytest

from pkdot_jax.data import decode, loader, transforms
from pkdot_jax.data import workers as workers_lib


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
  with pytest.raises(ValueError, match="read_threads=-1"):
    loader.make_loader(source, batch_size=2, worker_count=1, read_threads=-1)
  with pytest.raises(ValueError, match="worker_count=-1"):
    loader.make_loader(source, batch_size=2, worker_count=-1)


def _assert_same_batches(a_batches, b_batches):
  assert len(a_batches) == len(b_batches)
  for a, b in zip(a_batches, b_batches):
    assert list(a) == list(b)  # same keys in the same order
    for key in a:
      assert a[key].dtype == b[key].dtype, key
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_record_reader_equals_tfds_decoding(tiny_binary, monkeypatch):
  """The fast reader returns tfds's examples (fields, order, dtypes, values), with libdeflate and with zlib."""
  _, source = tiny_binary
  reader = decode.RecordReader.of(source)
  assert reader is not None and set(reader._tensors) == {"video", "physio", "audio"}
  for backend in ("default", "zlib"):
    if backend == "zlib":
      fallback = decode._Inflater()
      fallback._lib = None
      monkeypatch.setattr(decode, "_INFLATER", fallback)
      reader = decode.RecordReader.of(source)
    for i in [0, 7, len(source) - 1, 7]:  # record 7 twice: decoded in full, then from the cache of small fields
      fast, slow = reader[i], source[i]
      assert list(fast) == list(slow)
      for key in slow:
        np.testing.assert_array_equal(np.asarray(fast[key]), np.asarray(slow[key]), err_msg=f"{backend} {key}")
        assert np.asarray(fast[key]).dtype == np.asarray(slow[key]).dtype


def test_inflater_names_the_field_of_bad_data():
  out = np.empty((4, 4), np.uint8)
  good = zlib.compress(np.arange(16, dtype=np.uint8).tobytes())
  decode.inflater().into(good, out, "record 3, field 'video'")
  assert out.ravel().tolist() == list(range(16))
  with pytest.raises(ValueError, match="record 3, field 'video'"):
    decode.inflater().into(zlib.compress(b"x" * 15), out, "record 3, field 'video'")  # one byte short
  with pytest.raises(ValueError, match="field 'video'"):
    decode.inflater().into(b"not zlib", out, "record 3, field 'video'")


def test_collate_of_views_equals_stacking():
  """Collation copies flipped / cropped views (rows of 3-byte pixels) exactly as np.stack, with the dtype rules."""
  rng = np.random.default_rng(0)
  clips = [rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8) for _ in range(3)]
  examples = [{"video": c[:, 1:5, ::-1], "label": np.int64(k), "x": np.float64(k) / 3, "name": b"s"}
              for k, c in enumerate(clips)]
  batch = loader.collate(examples)
  np.testing.assert_array_equal(batch["video"], np.stack([c[:, 1:5, ::-1] for c in clips]))
  assert batch["label"].dtype == np.int32 and batch["x"].dtype == np.float32 and "name" not in batch
  assert loader.collate(examples, keep_strings=True)["name"].tolist() == [b"s"] * 3
  with pytest.raises(ValueError, match="field 'video'"):
    loader.collate([examples[0], {**examples[1], "video": clips[1]}])


def test_one_iterator_serves_every_epoch(tiny_binary):
  """An endless loader yields, epoch after epoch, the batches of a loader of that many epochs; `iterate(start)`
  starts at any global batch; `epoch_seeds` gives every epoch the batches of a one-epoch loader seeded with
  `epoch_seed(seed, epoch)` (the trainer's seeding)."""
  _, source = tiny_binary
  kwargs = dict(batch_size=8, seed=4, transforms=transforms.video_transforms(train=True, crop=(12, 12)))
  three = list(loader.make_loader(source, num_epochs=3, **kwargs))
  endless = loader.make_loader(source, num_epochs=None, **kwargs)
  _assert_same_batches(list(itertools.islice(iter(endless), len(three))), three)
  _assert_same_batches(list(itertools.islice(endless.iterate(5), len(three) - 5)), three[5:])
  reseeded = loader.make_loader(source, num_epochs=None, epoch_seeds=True, **kwargs)
  per_epoch = reseeded.batches_per_epoch
  stream = list(itertools.islice(iter(reseeded), 3 * per_epoch))
  for epoch in range(3):
    single = list(loader.make_loader(source, num_epochs=1, **{**kwargs, "seed": loader.epoch_seed(4, epoch)}))
    _assert_same_batches(stream[epoch * per_epoch:(epoch + 1) * per_epoch], single)


def _loader_workers() -> set[int]:
  return {p.pid for p in multiprocessing.active_children() if p.name.startswith(workers_lib.WORKER_NAME)}


def test_workers_kept_across_epochs_match_in_process(tiny_binary):
  """Over several epochs, 2 worker processes give the batches of 0 workers, and the same 2 processes serve all
  epochs (no restart at an epoch boundary)."""
  _, source = tiny_binary
  kwargs = dict(batch_size=16, seed=5, num_epochs=None, transforms=transforms.video_transforms(train=True))
  inline = list(itertools.islice(iter(loader.make_loader(source, **kwargs)), 13))
  before = _loader_workers()
  iterator = iter(loader.make_loader(source, worker_count=2, **kwargs))
  first = next(iterator)
  workers = _loader_workers() - before
  assert len(workers) == 2
  rest = list(itertools.islice(iterator, 12))  # 4 batches an epoch: three epoch boundaries
  assert _loader_workers() - before == workers
  iterator.close()
  assert not _loader_workers() - before
  _assert_same_batches([first, *rest], inline)


_SHM_SCRIPT = """
import gc, os, sys
from pkdot_jax.data import loader, synthetic, transforms
def entries():
  return set(os.listdir("/dev/shm"))
def main():
  source = synthetic.prepare(sys.argv[1], "binary_tiny", seed=0)["train"]
  make = lambda epochs, workers: loader.make_loader(source, batch_size=16, num_epochs=epochs, worker_count=workers,
                                                    transforms=transforms.video_transforms(train=True))
  before = entries()
  kept = list(make(2, 2))                         # finished; its batches still held at exit
  assert len(kept) == 8
  iterator = iter(make(None, 1)); next(iterator); next(iterator); iterator.close()   # abandoned, closed
  iterator = iter(make(None, 1)); next(iterator); next(iterator); del iterator; gc.collect()   # abandoned, dropped
  print("left", sorted(entries() - before))
if __name__ == "__main__":
  main()
"""


def test_no_shared_memory_left_behind(tiny_binary, tmp_path):
  """Whether a worker loader finishes, is closed mid-epoch or is dropped, nothing is left in /dev/shm and the
  resource tracker reports nothing leaked at exit."""
  data_dir, _ = tiny_binary
  script = tmp_path / "shm_script.py"
  script.write_text(_SHM_SCRIPT)
  env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[2])}
  run = subprocess.run([sys.executable, str(script), str(data_dir)], capture_output=True, text=True, env=env,
                       timeout=600)
  assert run.returncode == 0, run.stderr[-3000:]
  assert "left []" in run.stdout, run.stdout
  assert "leaked" not in run.stderr and "resource_tracker" not in run.stderr, run.stderr[-3000:]


def test_worker_batches_are_collated_into_the_shared_slot(tiny_binary):
  """A worker collates the large arrays of a batch straight into its slot (no copy, nothing pickled) and the
  small ones as usual; a batch shaped unlike the slot's layout is collated apart, with the same values."""
  _, source = tiny_binary
  batches = loader.make_loader(source, batch_size=16, seed=2, transforms=transforms.video_transforms(train=True))
  reader = loader._BatchReader(batches, len(batches))
  first = reader.read(0)
  layout = workers_lib.Layout.of(first, 16)
  large = sorted(key for key, value in first.items() if value.nbytes >= workers_lib.SHARED_MIN_BYTES)
  assert "video" in large and "label" not in large
  assert sorted(key for key, *_ in layout.fields) == large
  assert layout.nbytes >= sum(first[key].nbytes for key in large)
  views = layout.views(bytearray(layout.nbytes))
  allocate = workers_lib._SlotAllocator(views)
  second = reader.read(1, allocate)
  assert allocate.rows == {key: 16 for key in large}
  for key in second:
    assert any(np.shares_memory(second[key], view) for view in views.values()) == (key in large), key
  _assert_same_batches([second], [reader.read(1)])
  small = workers_lib._SlotAllocator(workers_lib.Layout.of(first, 8).views(bytearray(layout.nbytes)))
  assert reader.read(1, small)["video"].shape[0] == 16 and small.rows == {}  # more rows than the slot holds


def test_worker_errors_reach_the_caller(tiny_binary):
  """A transform that fails in a worker raises its own exception in the main process, naming the worker."""
  _, source = tiny_binary
  chain = [*transforms.video_transforms(train=True), _FailsOn(5)]
  batches = loader.make_loader(source, batch_size=4, shuffle=False, transforms=chain, worker_count=2)
  with pytest.raises(ValueError, match="example 5") as raised:
    list(batches)
  assert any(workers_lib.WORKER_NAME in note for note in getattr(raised.value, "__notes__", []))
  assert not _loader_workers()


def test_a_worker_that_dies_is_named_with_its_exit_code(tiny_binary):
  _, source = tiny_binary
  batches = loader.make_loader(source, batch_size=4, shuffle=False, transforms=[_ExitsOn(5)], worker_count=1)
  with pytest.raises(RuntimeError, match=rf"{workers_lib.WORKER_NAME}-0 .* exited with code 3 before sending batch 1"):
    list(batches)
  assert not _loader_workers()


class _ExitsOn:
  """A transform whose process exits on one example (as a worker killed by the system would)."""

  def __init__(self, index: int):
    self.index = index

  def __call__(self, example, rng):
    if int(example["index"]) == self.index:
      os._exit(3)
    return example


class _FailsOn:
  """A transform that raises on one example (picklable: it runs in worker processes)."""

  def __init__(self, index: int):
    self.index = index

  def __call__(self, example, rng):
    if int(example["index"]) == self.index:
      raise ValueError(f"example {self.index} is bad")
    return example


def test_trainer_data_keeps_workers_across_epochs_and_evaluations(tiny_binary):
  """The trainer's `Data` with 2 workers gives the batches of 0 workers epoch after epoch, for training and for
  evaluation, from the same worker processes; a resumed epoch (skip) gives the rest of that epoch; close() stops
  the workers."""
  from pkdot_jax.train import input as input_lib
  _, source = tiny_binary
  train_tf, eval_tf = transforms.video_transforms(train=True, crop=(12, 12)), transforms.video_transforms(
      train=False, crop=(12, 12))

  def data(workers):
    split = lambda start, stop: input_lib.Split(source, np.arange(start, stop))
    return input_lib.Data(train=split(0, 40), val=split(40, 50), test=split(50, 60), train_transforms=train_tf,
                          eval_transforms=eval_tf, worker_count=workers)
  inline, workers = data(0), data(2)
  before = _loader_workers()
  started = None
  for epoch in range(3):
    _assert_same_batches(list(workers.train_batches(epoch, (3,), 8)), list(inline.train_batches(epoch, (3,), 8)))
    _assert_same_batches(list(workers.eval_batches("val", 8)), list(inline.eval_batches("val", 8)))
    started = started or _loader_workers() - before
    assert _loader_workers() - before == started and len(started) == 4  # 2 for training, 2 for validation
  first = list(inline.train_batches(1, (3,), 8))
  _assert_same_batches(list(workers.train_batches(1, (3,), 8, skip=2)), first[2:])
  single_epoch = loader.make_loader(source, np.arange(0, 40), batch_size=8, seed=loader.epoch_seed(3, 1),
                                    drop_remainder=True, transforms=train_tf)
  _assert_same_batches(first, list(single_epoch))  # the per-epoch seeding of the trainer
  workers.close()
  assert not _loader_workers() - before


def test_trainer_members_stack_their_seeds_batches_and_share_a_seed(tiny_binary):
  """Members (M, B, ...) hold their own seed's batches, in member order; two members of one seed (two
  distillation weights) get the same batches, all of that epoch's (not alternate batches of one stream)."""
  from pkdot_jax.train import input as input_lib
  _, source = tiny_binary
  train_tf = transforms.video_transforms(train=True, crop=(12, 12))
  split = lambda start, stop: input_lib.Split(source, np.arange(start, stop))
  data = input_lib.Data(train=split(0, 40), val=split(40, 50), test=split(50, 60), train_transforms=train_tf,
                        eval_transforms=train_tf)
  singles = {seed: list(data.train_batches(1, (seed,), 8)) for seed in (3, 5)}
  for seeds in ((3, 5), (3, 3), (5, 3, 5)):
    stacked = list(data.train_batches(1, seeds, 8))
    assert len(stacked) == len(singles[3]) == 5
    for m, seed in enumerate(seeds):
      _assert_same_batches([{k: v[m] for k, v in b.items()} for b in stacked],
                           [{k: v for k, v in b.items() if k in stacked[0]} for b in singles[seed]])
