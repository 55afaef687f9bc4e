"""Count silent wrong results of the losses over the edge-case grid of tests/losses/loss_edge_cases.py.

  python experiments/loss_edge_case_count.py                 # the package on sys.path
  python experiments/loss_edge_case_count.py --package DIR   # e.g. an older version: git archive REV pkdot_jax

Prints every case that is not "ok" and the totals (cases, silently wrong, unexpected errors). The grid and its
rules are the test's, so the counts before and after a change are comparable.
"""

import argparse
import collections
import os
import sys
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--package", help="directory holding the pkdot_jax package to test (default: importable one)")
  parser.add_argument("--verbose", action="store_true", help="print every case")
  args = parser.parse_args()
  if args.package:
    sys.path.insert(0, os.path.abspath(args.package))
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "losses"))
  import loss_edge_cases  # pylint: disable=import-outside-toplevel
  print("package:", loss_edge_cases.losses.__file__)
  start = time.perf_counter()
  counts = collections.Counter()
  per_loss = collections.Counter()
  grid = loss_edge_cases.cases()
  for case in grid:
    verdict, detail = loss_edge_cases.judge(case)
    counts[verdict] += 1
    if verdict != "ok":
      per_loss[case.name] += 1
    if verdict != "ok" or args.verbose:
      print(f"{verdict:5s} {case.name:24s} {case.what:22s} {detail}")
  print(f"{len(grid)} cases in {time.perf_counter() - start:.0f} s: {counts['ok']} ok, {counts['wrong']} silently "
        f"wrong, {counts['error']} unexpected errors; not ok by loss: {dict(sorted(per_loss.items()))}")


if __name__ == "__main__":
  main()
