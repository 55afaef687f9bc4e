"""What a run records about where it ran: package versions, devices, git revision, command line, and the
weight files its backbones start from (path and sha256: a file renamed or replaced is told apart)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time

import jax

from pkdot_jax.models import pretrained
from pkdot_jax.train import records

PACKAGES = ("pkdot-jax", "jax", "jaxlib", "flax", "optax", "ott-jax", "orbax-checkpoint", "tensorflow-datasets",
            "grain", "numpy")


def git_revision() -> str | None:
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5)
  except (OSError, subprocess.SubprocessError):
    return None
  if rev.returncode:
    return None
  return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def versions() -> dict[str, str | None]:
  out: dict[str, str | None] = {}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def cpu_name() -> str:
  """The host CPU's model name (Linux /proc/cpuinfo), else platform.processor()."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()


def hardware() -> dict[str, object]:
  devices = jax.devices()
  return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
          "num_devices": len(devices), "num_processes": jax.process_count(),
          "host": platform.node(), "cpu_count": os.cpu_count(), "processor": cpu_name() or None}


def collect(config=None) -> dict[str, object]:
  info: dict[str, object] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv),
          "python": sys.version.split()[0], "versions": versions(), "hardware": hardware(),
          "git_revision": git_revision()}
  if config is not None:
    info["config"] = json.loads(config.to_json_best_effort())
    if "model" in config:  # the weight files the backbones start from: path, sha256, size
      info["pretrained"] = pretrained.record(config.model)
  return info


def write(workdir: str, config) -> None:
  """Appends this start's record to run_info.json (one entry per start or resume of the run)."""
  if jax.process_index() != 0:
    return
  path = records.run_info_path(workdir)
  records.check_readable(workdir, ())
  starts = records.read_json(path, default=[])
  starts.append(collect(config))
  records.write_json(path, starts, indent=2)
