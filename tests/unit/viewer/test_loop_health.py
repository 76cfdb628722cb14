"""The control panel's line about the density loop: trips, saturations, stale data."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.qt


def test_loop_health_lines_name_the_counts_and_the_last_event() -> None:
    from live_decode.transport.control import StatusReply
    from live_decode.viewer.side_panel import _loop_health

    quiet = {"laser_mw": 1.0, "safety_trips": 0, "saturations": 0, "stale_episodes": 0}
    assert _loop_health(StatusReply.from_json(quiet)) == []
    status = StatusReply.from_json(
        {
            "laser_mw": 1.0,
            "mode": "auto",
            "safety_trips": 2,
            "saturations": 0,
            "stale_episodes": 1,
            "stale": True,
            "last_event": "stale: stats are 2.00 s old",
        }
    )
    assert _loop_health(status) == [
        "loop: trips 2, stale 1 (stale now)",
        "last: stale: stats are 2.00 s old",
    ]
