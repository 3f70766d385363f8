"""core/limits.py: every user number is clamped or defaulted, with a notice, never an exception."""

import pytest

from core.limits import LIMITS, clamp


@pytest.mark.parametrize("raw", ["abc", None, "nan", float("inf"), "-inf", [1, 2], ""])
def test_garbage_falls_back_to_default_with_notice(raw):
    value, notice = clamp("rho", raw)
    assert value == LIMITS["rho"].default and notice


def test_out_of_range_is_clamped_with_notice():
    assert clamp("particles", 1e12) == (20_000, clamp("particles", 1e12)[1])
    value, notice = clamp("rho", -3)
    assert value == 0.0 and "outside" in notice


def test_in_range_passes_silently_and_integers_are_cast():
    assert clamp("rho", "0.1") == (0.1, None)
    value, notice = clamp("steps", 12.6)
    assert value == 13 and isinstance(value, int) and notice is None
