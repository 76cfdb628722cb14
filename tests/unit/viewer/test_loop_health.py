"""The control panel's line about the density loop: trips, saturations, stale data."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.qt


def test_loop_health_lines_name_the_counts_and_the_last_event() -> None:
    from live_decode.viewer.side_panel import _loop_health

    assert _loop_health({"safety_trips": 0, "saturations": 0, "stale_episodes": 0}) == []
    status = {
        "safety_trips": 2,
        "saturations": 0,
        "stale_episodes": 1,
        "stale": True,
        "last_event": "stale: stats are 2.00 s old",
    }
    assert _loop_health(status) == [
        "loop: trips 2, stale 1 (stale now)",
        "last: stale: stats are 2.00 s old",
    ]
