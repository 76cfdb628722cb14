"""``live-decode run --no-dashboard``: plain status lines instead of the live table."""

from __future__ import annotations

import pytest

from live_decode.cli.run import PlainStatus, status_line
from live_decode.messages import FrameStats, StatsMsg, WorkerStats
from live_decode.pipeline.supervisor import RunState


def _state(frames: int) -> RunState:
    state = RunState()
    worker = WorkerStats(fps=412.34, latency_ms=12.4, queue_depth=1, dropped_upstream=2)
    stats = tuple(FrameStats(f, 3, 0.5, 2000.0, 10.0, 15.0) for f in range(frames))
    state.absorb(StatsMsg(frame_stats=stats, worker=worker))
    state.note("worker exited with 1; restarted")
    state.restarts = 1
    return state


def test_status_line_carries_the_dashboard_figures() -> None:
    line = status_line(_state(1200))
    assert line == (
        "frames 1,200 | locs 3,600 | density 0.50/µm² | worker 412.3 frames/s | latency 12 ms"
        " | dropped 2 | restarts 1 | errors 1"
    )
    assert "\n" not in line
    assert status_line(RunState()).startswith("frames 0 | locs 0 | density - | worker -")


def test_plain_status_prints_one_line_per_period(capsys: pytest.CaptureFixture[str]) -> None:
    printer = PlainStatus(period_s=3600.0)
    for frames in (10, 20, 30):  # called a few times a second by the supervisor
        printer(_state(frames))
    printer.final()
    printer.final()  # the last state is printed once
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["frames 10", "frames 30"]
