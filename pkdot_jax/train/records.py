"""The run record, in one place: the workdir layout, atomic JSON records, the metrics journal, run names.

Every file a run writes or a report reads is named here, so the layout is declared once:

  <workdir>/config.json, run_info.json        the config; one entry per start (versions, devices, git revision)
  <workdir>/metrics.jsonl                     the journal: one JSON line per stage and epoch
  <workdir>/<stage>/checkpoints/<step>/       periodic orbax checkpoints (resume points)
  <workdir>/<stage>/best/                     the selected variables (the next stage's input)
  <workdir>/<stage>/checksums/                a checksum manifest per saved checkpoint directory (checksums.py)
  <workdir>/<stage>/result.json               written last: the stage is done
  <workdir>/<stage>/damaged/                  checkpoints that failed verification, set aside
  <sweep root>/sweep.json, runs/<run name>/, teachers/<key>/, runs/<run name>/failed.json
  <demo root>/demo.json, timing.jsonl, ceiling.json, report/ (and the sweep layout)

JSON records are written atomically (a temporary file in the same directory, fsync, rename), so a crash leaves
the old record or the new one, never half of one. A record that cannot be read raises `RecordError`, whose
message starts with the file's path. The journal is appended one fsynced line at a time; a crash or a full disk
can still leave its last line cut short, so the writer sets such a line aside (`metrics.jsonl.corrupt-<n>`,
named in a warning) before appending, and readers skip it; a garbled line before the last one is an error
naming its line number, since records after it cannot be trusted to be in order.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from typing import Any

from pkdot_jax import errors

CONFIG = "config.json"
RUN_INFO = "run_info.json"
METRICS = "metrics.jsonl"
RESULT = "result.json"
BEST = "best"
CHECKPOINTS = "checkpoints"
CHECKSUMS = "checksums"
SWEEP = "sweep.json"
RUNS = "runs"
TEACHERS = "teachers"
FAILED = "failed.json"
DAMAGED = "damaged"

_MISSING = object()


class RecordError(errors.UserError, ValueError):
  """A record of a workdir that cannot be used: the message starts with the file's path."""


# ------------------------------------------------------------------------------------------------ layout
def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG)


def run_info_path(workdir: str) -> str:
  return os.path.join(workdir, RUN_INFO)


def metrics_path(workdir: str) -> str:
  return os.path.join(workdir, METRICS)


def stage_dir(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage)


def best_dir(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage, BEST)


def result_path(workdir: str, stage: str) -> str:
  return os.path.join(workdir, stage, RESULT)


def checkpoints_dir(stage_directory: str) -> str:
  return os.path.join(stage_directory, CHECKPOINTS)


def checksums_dir(stage_directory: str) -> str:
  return os.path.join(stage_directory, CHECKSUMS)


def sweep_path(root: str) -> str:
  return os.path.join(root, SWEEP)


def run_dir(root: str, name: str) -> str:
  return os.path.join(root, RUNS, name)


def run_dirs(root: str) -> list[str]:
  """The run directories of a sweep root, sorted; [root] itself when it holds a single run."""
  return sorted(glob.glob(os.path.join(root, RUNS, "*"))) or [root]


def teachers_root(root: str) -> str:
  return os.path.join(root, TEACHERS)


def teacher_result_paths(root: str) -> list[str]:
  """result.json of every shared teacher of a sweep root."""
  return sorted(glob.glob(os.path.join(root, TEACHERS, "*", "teacher", RESULT)))


def failed_path(run_directory: str) -> str:
  return os.path.join(run_directory, FAILED)


DEMO_FILES = {"demo": "demo.json", "timing": "timing.jsonl", "ceiling": "ceiling.json", "report": "report"}


def demo_file(root: str, kind: str) -> str:
  """A demo root's own records: demo.json (what ran), timing.jsonl (wall and compile seconds per run),
  ceiling.json (the ridge probe per fold), report/ (the rebuilt report)."""
  return os.path.join(root, DEMO_FILES[kind])


def set_aside(path: str, stage_directory: str) -> str:
  """Moves a damaged file or directory to `<stage>/damaged/<name>.<n>` (kept for inspection, out of the run's
  way); returns where it went."""
  target = os.path.join(stage_directory, DAMAGED)
  os.makedirs(target, exist_ok=True)
  n = 1
  while os.path.exists(os.path.join(target, f"{os.path.basename(path)}.{n}")):
    n += 1
  moved = os.path.join(target, f"{os.path.basename(path)}.{n}")
  os.replace(path, moved)
  return moved


# ------------------------------------------------------------------------------------------------ JSON
def write_json(path: str, record: Any, **dump_kwargs) -> None:
  """Writes `record` atomically: a temporary file beside `path`, fsynced, renamed over it."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      json.dump(record, f, **dump_kwargs)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def read_json(path: str, default: Any = _MISSING) -> Any:
  """The JSON record at `path`; `default` when the file does not exist (if given). Raises `RecordError` naming
  the path on an unreadable, empty or garbled file."""
  if default is not _MISSING and not os.path.exists(path):
    return default
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise
  except OSError as e:
    raise RecordError(f"{path}: cannot be read ({e.strerror or e})") from None
  if not data.strip():
    raise RecordError(f"{path}: empty file, expected a JSON record; restore it or remove it and its run")
  try:
    return json.loads(data)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise RecordError(f"{path}: not a valid JSON record ({e}); restore it or remove it and its run") from None


def read_dict(path: str, default: Any = _MISSING) -> dict[str, Any]:
  """`read_json` for records that must be a JSON object."""
  record = read_json(path, default)
  if not isinstance(record, dict):
    raise RecordError(f"{path}: expected a JSON object, found {type(record).__name__}")
  return record


def check_readable(workdir: str, stages: tuple[str, ...]) -> None:
  """Reads every record of a workdir that a run of `stages` will read (run_info.json, the stages' result.json,
  the journal), so an unreadable one is named before anything is trained or written."""
  starts = read_json(run_info_path(workdir), default=[])
  if not isinstance(starts, list):
    raise RecordError(f"{run_info_path(workdir)}: expected a JSON list of starts, found {type(starts).__name__}")
  for stage in stages:
    read_dict(result_path(workdir, stage), default={})
  if os.path.exists(metrics_path(workdir)):
    _parse_lines(metrics_path(workdir))  # a damaged line before the last: RecordError


# --------------------------------------------------------------------------------------------- the journal
def append_jsonl(path: str, record: dict[str, Any]) -> None:
  """Appends one record as one line, fsynced. A cut-short or garbled last line left by a crash is set aside
  first (`repair_jsonl`), so the new line never follows a damaged one."""
  repair_jsonl(path)
  with open(path, "a") as f:
    f.write(json.dumps(record) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _parse_lines(path: str) -> tuple[list[dict[str, Any]], int | None]:
  """(records, byte offset where a bad last line starts, or None). A line without its newline is cut short
  (every append writes one). A bad line before the last: RecordError."""
  with open(path, "rb") as f:
    data = f.read()
  lines = data.split(b"\n")
  complete = lines[-1] == b""  # the file ends with a newline
  if complete:
    lines.pop()
  records: list[Any]
  records, offset = [], 0
  for number, line in enumerate(lines, start=1):
    last = number == len(lines)
    try:
      record = json.loads(line) if line.strip() else None
      if record is not None and not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
      if last and not complete:
        raise ValueError("no newline: cut short")
    except (UnicodeDecodeError, ValueError) as e:
      if last:
        return records, offset
      raise RecordError(f"{path}: line {number} is not a JSON record ({e}), and records follow it; move the "
                        f"damaged lines out of the file to go on") from None
    if record is not None:
      records.append(record)
    offset += len(line) + 1
  return records, None


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """The journal's records in order; a cut-short or garbled last line is skipped with a warning (the writer sets
  it aside before its next append)."""
  if not os.path.exists(path):
    return []
  records, bad_offset = _parse_lines(path)
  if bad_offset is not None:
    print(f"pkdot: warning: {path}: the last line is incomplete or garbled (a crash or a full disk during a "
          f"write); it is ignored", file=sys.stderr)
  return records


def repair_jsonl(path: str) -> str | None:
  """Sets a cut-short or garbled last line of the journal aside: copied to `<path>.corrupt-<n>` (a new n each
  time), then truncated away, with a warning naming both files. Returns the copy's path, or None when the
  journal is whole. A garbled line before the last raises `RecordError`."""
  if not os.path.exists(path):
    return None
  _, bad_offset = _parse_lines(path)
  if bad_offset is None:
    return None
  n = 1
  while os.path.exists(f"{path}.corrupt-{n}"):
    n += 1
  aside = f"{path}.corrupt-{n}"
  with open(path, "rb") as f:
    f.seek(bad_offset)
    tail = f.read()
  with open(aside, "wb") as f:
    f.write(tail)
    f.flush()
    os.fsync(f.fileno())
  with open(path, "r+b") as f:
    f.truncate(bad_offset)
    f.flush()
    os.fsync(f.fileno())
  print(f"pkdot: warning: {path}: its last line was incomplete or garbled ({len(tail)} bytes, from a crash or a "
        f"full disk); moved to {aside}, the run goes on", file=sys.stderr)
  return aside


def read_metrics(workdir: str, stage_order: tuple[str, ...]) -> list[dict[str, Any]]:
  """metrics.jsonl records, the last one kept per (stage, epoch) (a resumed epoch may appear twice), in stage
  then epoch order."""
  path = metrics_path(workdir)
  by_key: dict[tuple[str, int], dict[str, Any]] = {}
  for number, r in enumerate(read_jsonl(path), start=1):
    if r.get("stage") not in stage_order or not isinstance(r.get("epoch"), int):
      raise RecordError(f"{path}: record {number} has no known stage and integer epoch ({str(r)[:80]})")
    by_key[(r["stage"], r["epoch"])] = r
  return sorted(by_key.values(), key=lambda r: (stage_order.index(r["stage"]), r["epoch"]))


# ------------------------------------------------------------------------------------------------ run names
def run_name(overrides: dict[str, Any]) -> str:
  """A sweep run's directory name: `key=value` pairs joined by `__` (lists joined by commas), "base" if none."""
  parts = []
  for key, value in overrides.items():
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    parts.append(f"{key}={text}")
  return "__".join(parts).replace("/", "_") or "base"


def parse_run_name(name: str) -> dict[str, str]:
  """The inverse of `run_name`: {key: value as text}."""
  out = {}
  for part in name.split("__"):
    if "=" in part:
      key, value = part.split("=", 1)
      out[key] = value
  return out
