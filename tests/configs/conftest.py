"""tests/data on sys.path so that the fake-layout writers (`fakes`) can be imported here too."""

import os
import sys

_DATA_TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
if _DATA_TESTS not in sys.path:
  sys.path.insert(0, _DATA_TESTS)
