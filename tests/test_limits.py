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


def test_check_refuses_what_clamp_would_correct():
    """limits.check (configs, CLI): raises instead of correcting, and accepts numpy scalars."""
    import numpy as np

    from core.limits import check

    check("rho", 0.1)
    check("steps", np.int64(300))
    check("rho", np.float32(0.5))
    for name, bad, words in [("rho", 5.0, "outside"), ("rho", float("nan"), "outside"), ("steps", 2.5, "whole"),
                             ("rho", "0.1", "number"), ("steps", True, "number")]:
        with pytest.raises(ValueError, match=words):
            check(name, bad)
