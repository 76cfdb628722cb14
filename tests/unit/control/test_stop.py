"""control.stop_when: each condition, and nothing before it is met."""

from __future__ import annotations

import math

import pytest

from live_decode.config import StopWhenConfig
from live_decode.control.stop import stop_reason


@pytest.mark.parametrize(
    ("cfg", "frc", "locs", "minutes", "starts"),
    [
        (StopWhenConfig(), 5.0, 10**9, 1e4, None),
        (StopWhenConfig(frc_nm=30.0), 31.0, 0, 0.0, None),
        (StopWhenConfig(frc_nm=30.0), 29.5, 0, 0.0, "frc_nm"),
        (StopWhenConfig(frc_nm=30.0), math.nan, 0, 0.0, None),
        (StopWhenConfig(frc_nm=30.0), None, 0, 0.0, None),
        (StopWhenConfig(localizations=2e6), None, 1_999_999, 0.0, None),
        (StopWhenConfig(localizations=2e6), None, 2_000_000, 0.0, "localizations"),
        (StopWhenConfig(minutes=20.0), None, 0, 19.9, None),
        (StopWhenConfig(minutes=20.0), None, 0, 20.0, "minutes"),
    ],
)
def test_stop_reason(
    cfg: StopWhenConfig, frc: float | None, locs: int, minutes: float, starts: str | None
) -> None:
    reason = stop_reason(cfg, frc_nm=frc, localizations=locs, minutes=minutes)
    if starts is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(starts)
