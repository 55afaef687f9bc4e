"""What each --verbosity level prints (pkdot_jax/console.py): progress lines on stderr from level 0, bars from
level 1, nothing but errors and results at -1; stdout is never used for progress."""

import pytest

from pkdot_jax import console


@pytest.fixture(autouse=True)
def _restore_level():
  yield
  console.set_verbosity(console.DEFAULT)


@pytest.mark.parametrize("level, shown, bars", [(-1, False, False), (0, True, False), (1, True, True),
                                                (2, True, True)])
def test_levels(level, shown, bars, capsys):
  console.set_verbosity(level)
  console.info("teacher: resuming at step 4 of 6")
  console.info("a sweep's failure", console.QUIET)
  out = capsys.readouterr()
  assert out.out == ""
  expected = (["teacher: resuming at step 4 of 6"] if shown else []) + ["a sweep's failure"]
  assert out.err.splitlines() == expected
  assert console.bars_enabled() is bars


def test_default_shows_bars():
  assert console.DEFAULT == console.BARS and console.verbosity() == console.DEFAULT and console.bars_enabled()
