"""Text output of the studies: markdown tables, result cells, provenance lines and CSV files.

The bottom of pkdot_jax/study with stats.py and plots.py: it formats what it is given and reads no run directory.
"""

from __future__ import annotations

import csv
from typing import Any

from pkdot_jax.study import stats as stats_lib


def markdown(header: list[str], lines: list[list[str]]) -> str:
  """A markdown table: the header row, the rule, one row per list of cells."""
  return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                   + ["| " + " | ".join(line) + " |" for line in lines])


def setting_order(setting: tuple) -> list:
  """A sort key for settings of a grid: numbers in numeric order (8 before 16), then everything else as text."""
  return [(0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in setting]


def diff_cells(c: dict[str, Any], p_holm: float | None = None) -> tuple[str, str, str]:
  """(difference [95% CI], p, Holm p) of a fold-aware comparison; from fewer than stats.MIN_FOLDS folds the mean
  difference alone, marked, and no p-values."""
  if not stats_lib.supports_inference(c["folds"]):
    return f"{c['diff']:+.3f} (mean; {c['folds']} folds, no interval)", "", ""
  p_holm = c["p_holm"] if p_holm is None else p_holm
  return f"{c['diff']:+.3f} [{c['diff_low']:+.3f}, {c['diff_high']:+.3f}]", f"{c['p']:.3f}", f"{p_holm:.3f}"


def provenance_lines(prov: dict[str, Any]) -> list[str]:
  """Markdown list items naming the hardware, config, seeds, command, versions and failed runs of a provenance
  record (results.provenance)."""
  hw = prov.get("hardware") or {}
  return [f"- hardware: {hw.get('device_kind')} x{hw.get('num_devices')} ({hw.get('platform')}), "
          f"{hw.get('cpu_count')} host CPUs",
          f"- config: {prov.get('config')} with {prov.get('base')}",
          f"- seeds: {prov.get('seeds')}",
          f"- command: `{prov.get('command')}`",
          f"- versions: {prov.get('versions')}, git {prov.get('git')}"] + [
              f"- FAILED, left out of the tables: {name}: {error.splitlines()[0]}"
              for name, error in (prov.get("failed") or {}).items()]


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
  """`rows` as a CSV file with the union of their keys as columns (sorted); a missing value is an empty cell."""
  keys = sorted({k for r in rows for k in r})
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
