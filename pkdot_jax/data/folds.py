"""Cross-validation folds over example indices.

`subject_folds` is the protocol we use: subject-disjoint k folds (no subject in two of train / val / test), with
the validation subset drawn from the training subjects of each fold. `authors_clip_folds` reproduces the clip-level
split of the authors' released code, where clips of the same subject land in both train and test (identity
leakage); it exists only so that their numbers can be reproduced and must be named explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pkdot_jax import errors

Fold = tuple[np.ndarray, np.ndarray, np.ndarray]


def _check_common(num_examples: int, num_folds: int, val_fraction: float) -> None:
  if num_folds < 2:
    raise ValueError(f"num_folds must be >= 2, got {num_folds}")
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  if num_examples == 0:
    raise ValueError("subjects is empty")


def subject_folds(subjects: Sequence[int] | np.ndarray, num_folds: int, val_fraction: float = 0.1,
                  seed: int = 0) -> list[Fold]:
  """Subject-disjoint k-fold split with a validation subset inside the training subjects.

  Subjects (not examples) are shuffled with `seed` and dealt round-robin into `num_folds` groups; fold k tests
  on group k. From the remaining subjects, round(val_fraction * #train subjects) (at least 1 when
  val_fraction > 0) are moved to validation. Every example is in the test set of exactly one fold.

  Args:
    subjects: (N,) subject id (any hashable integer or string) of every example, in example-index order.
    num_folds: k >= 2; must not exceed the number of distinct subjects.
    val_fraction: fraction of each fold's training subjects held out for validation (0 -> empty val).
    seed: shuffling seed.

  Returns:
    list of k (train, val, test) int64 index arrays, each sorted ascending.
  """
  subjects = np.asarray(subjects)
  if subjects.ndim != 1:
    raise ValueError(f"subjects must be 1-D (N,), got shape {subjects.shape}")
  _check_common(subjects.size, num_folds, val_fraction)
  unique = np.unique(subjects)
  if num_folds > unique.size:
    raise errors.ConfigError(f"num_folds ({num_folds}) exceeds the number of distinct subjects ({unique.size})")
  rng = np.random.default_rng(seed)
  order = rng.permutation(unique)
  groups = [order[k::num_folds] for k in range(num_folds)]
  folds = []
  for k in range(num_folds):
    test_subjects = groups[k]
    rest = np.concatenate([groups[j] for j in range(num_folds) if j != k])
    rest = rng.permutation(rest)
    num_val = 0
    if val_fraction > 0:
      num_val = min(max(1, int(round(val_fraction * rest.size))), rest.size - 1)
    val_subjects, train_subjects = rest[:num_val], rest[num_val:]
    folds.append((np.flatnonzero(np.isin(subjects, train_subjects)),
                  np.flatnonzero(np.isin(subjects, val_subjects)),
                  np.flatnonzero(np.isin(subjects, test_subjects))))
  return folds


def authors_clip_folds(num_examples: int, num_folds: int, val_fraction: float = 0.1, seed: int = 0,
                       labels: Sequence[int] | np.ndarray | None = None) -> list[Fold]:
  """Clip-level k folds (the authors' leaky protocol): clips, not subjects, are dealt into folds.

  Clips of one subject end up in train and test alike, so test accuracy measures identity memorisation as much
  as affect recognition. When `labels` is given the split is stratified per class (as sklearn's
  StratifiedKFold with shuffling, which the released code uses). Validation is a random `val_fraction` of each
  fold's training clips.

  Args:
    num_examples: N, number of clips.
    num_folds: k >= 2.
    val_fraction: fraction of each fold's training clips held out for validation.
    seed: shuffling seed.
    labels: optional (N,) class ids for stratification.

  Returns:
    list of k (train, val, test) int64 index arrays, each sorted ascending.
  """
  _check_common(num_examples, num_folds, val_fraction)
  if num_folds > num_examples:
    raise errors.ConfigError(f"num_folds ({num_folds}) exceeds num_examples ({num_examples})")
  rng = np.random.default_rng(seed)
  fold_of = np.empty(num_examples, np.int64)
  if labels is None:
    fold_of[rng.permutation(num_examples)] = np.arange(num_examples) % num_folds
  else:
    labels = np.asarray(labels)
    if labels.shape != (num_examples,):
      raise ValueError(f"labels must have shape ({num_examples},), got {labels.shape}")
    offset = 0
    for value in np.unique(labels):
      members = rng.permutation(np.flatnonzero(labels == value))
      fold_of[members] = (np.arange(members.size) + offset) % num_folds
      offset += members.size
  folds = []
  for k in range(num_folds):
    test = np.flatnonzero(fold_of == k)
    rest = rng.permutation(np.flatnonzero(fold_of != k))
    num_val = int(round(val_fraction * rest.size))
    folds.append((np.sort(rest[num_val:]), np.sort(rest[:num_val]), test))
  return folds
