"""The control link against a real ControlServer: commands in order, status, no hang."""

from __future__ import annotations

import time

from live_decode.transport.control import SetLaser, SetMode, SetTarget, StatusReply
from live_decode.viewer.control_link import ControlLink, Reply, laser_power_of

from .synthetic import ControlFixture, wait_until


def test_commands_reach_the_source_in_order(control_server: ControlFixture) -> None:
    statuses: list[float] = []
    link = ControlLink(
        control_server.endpoint,
        on_status=lambda s: statuses.append(laser_power_of(s) or -1.0),
        status_interval_s=0.05,
    )
    link.start()
    try:
        link.set_laser(12.5)
        link.set_target(0.8)
        link.set_feedback(True)
        link.set_feedback(False)
        wait_until(lambda: link.sent == 4, what="4 replies")
        assert control_server.source.commands == [
            SetLaser(12.5),
            SetTarget(0.8),
            SetMode("auto"),
            SetMode("off"),
        ]
        last = link.last_reply
        assert last is not None and last.ok and last.describe() == "set_mode off: ok"
        wait_until(lambda: 12.5 in statuses, what="a status with the new power")
        status = link.status
        assert status is not None and status.mode == "off" and status.laser_mw == 12.5
    finally:
        assert link.stop()
    assert not link.running


def test_refusals_are_reported_and_an_absent_source_does_not_hang() -> None:
    link = ControlLink("tcp://127.0.0.1:1", timeout_ms=50, retries=0, status_interval_s=0.05)
    link.start()
    link.set_laser(3.0)
    wait_until(lambda: link.sent == 1, what="the timeout")
    last = link.last_reply
    assert last is not None and not last.ok and "no reply" in last.describe()
    started = time.monotonic()
    assert link.stop()
    assert time.monotonic() - started < 1.0


def test_reply_and_laser_helpers() -> None:
    assert laser_power_of(StatusReply.from_json({"ok": True, "laser_mw": 2})) == 2.0
    assert laser_power_of(StatusReply(laser_mw=float("nan"))) is None
    assert laser_power_of(StatusReply.from_json({"ok": True, "laser_mw": None})) is None
    refused = Reply(SetLaser(500.0), {"ok": False, "error": "too much"})
    assert refused.describe() == "set_laser 500: too much"
