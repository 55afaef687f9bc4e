"""Checksum manifests of saved checkpoint directories: a flipped bit or a zeroed block on disk is found before
the variables are restored, never trained on.

Orbax checks neither (a single flipped byte in a data file restored without error, some times as NaN weights),
so every file of a finished checkpoint directory is hashed (BLAKE2b, 256 bits) into a JSON manifest kept
outside the directory (orbax owns what is inside), and verified before a restore. A manifest is written only
once the save is known complete, and removed before a directory is overwritten, so it never describes a
directory in the middle of a write.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from pkdot_jax.train import records

ALGORITHM = "blake2b-256"
_CHUNK = 1 << 20


class DamagedCheckpointError(records.RecordError):
  """A saved file differs from its manifest (or is missing); the message starts with the file's path."""


def _digest(path: str) -> str:
  h = hashlib.blake2b(digest_size=32)
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      h.update(chunk)
  return h.hexdigest()


def _files(directory: str) -> list[str]:
  out: list[str] = []
  for parent, _, names in os.walk(directory):
    out.extend(os.path.relpath(os.path.join(parent, n), directory) for n in names)
  return sorted(out)


def compute(directory: str) -> dict[str, Any]:
  """{"algorithm", "files": {relative path: [size, digest]}} of every file under `directory`."""
  files = {}
  for rel in _files(directory):
    path = os.path.join(directory, rel)
    files[rel] = [os.path.getsize(path), _digest(path)]
  return {"algorithm": ALGORITHM, "files": files}


def write(directory: str, manifest_path: str) -> None:
  """Hashes the (complete) `directory` into `manifest_path`, atomically."""
  records.write_json(manifest_path, compute(directory), indent=1, sort_keys=True)


def verify(directory: str, manifest_path: str) -> bool:
  """True when `directory` matches its manifest, False when it has none (saved before manifests existed, or the
  process stopped between the save and the manifest). Raises `DamagedCheckpointError` naming the first file
  that is missing, of another size or of another content."""
  if not os.path.exists(manifest_path):
    return False
  manifest = records.read_dict(manifest_path)
  if manifest.get("algorithm") != ALGORITHM or not isinstance(manifest.get("files"), dict):
    raise records.RecordError(f"{manifest_path}: not a checksum manifest of this version ({ALGORITHM})")
  if not os.path.isdir(directory):
    raise DamagedCheckpointError(f"{directory}: missing (its checksum manifest {manifest_path} exists)")
  for rel, (size, digest) in sorted(manifest["files"].items()):
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
      raise DamagedCheckpointError(f"{path}: missing from the saved checkpoint (listed in {manifest_path})")
    actual = os.path.getsize(path)
    if actual != size:
      raise DamagedCheckpointError(f"{path}: {actual} bytes, but {size} were saved (truncated or overwritten)")
    if _digest(path) != digest:
      raise DamagedCheckpointError(f"{path}: contents differ from the checksum taken when it was saved (damaged "
                                   f"on disk)")
  return True


def remove(manifest_path: str) -> None:
  if os.path.exists(manifest_path):
    os.remove(manifest_path)
