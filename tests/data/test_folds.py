"""Fold helpers: subject-disjoint k folds with inner validation; the authors' clip-level folds."""

import numpy as np
import pytest

from pkdot_jax.data import folds


def test_subject_folds_disjoint_and_cover():
  subjects = np.repeat(np.array([10, 11, 12, 13, 14, 15, 16]), 3)
  result = folds.subject_folds(subjects, num_folds=3, val_fraction=0.25, seed=0)
  assert len(result) == 3
  tests = np.concatenate([test for _, _, test in result])
  assert np.array_equal(np.sort(tests), np.arange(subjects.size))  # every example tested exactly once
  for train, val, test in result:
    parts = [set(subjects[p]) for p in (train, val, test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert len(parts[1]) >= 1
    assert train.size + val.size + test.size == subjects.size
  assert all(np.array_equal(a, b) for fa, fb in zip(result, folds.subject_folds(subjects, 3, 0.25, 0))
             for a, b in zip(fa, fb))


def test_subject_folds_errors():
  with pytest.raises(ValueError, match="num_folds"):
    folds.subject_folds([0, 1], num_folds=3)
  with pytest.raises(ValueError, match="val_fraction"):
    folds.subject_folds([0, 1, 2], num_folds=2, val_fraction=1.0)


def test_authors_clip_folds_stratified_and_leaky():
  labels = np.tile([0, 1], 20)
  subjects = np.repeat(np.arange(4), 10)
  result = folds.authors_clip_folds(labels.size, num_folds=5, val_fraction=0.1, seed=0, labels=labels)
  tests = np.concatenate([test for _, _, test in result])
  assert np.array_equal(np.sort(tests), np.arange(labels.size))
  for train, val, test in result:
    assert np.bincount(labels[test]).tolist() == [4, 4]
    assert not set(train) & set(test) and not set(val) & set(test)
  train, _, test = result[0]
  assert set(subjects[train]) & set(subjects[test])  # the leakage it exists to reproduce
