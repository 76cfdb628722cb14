"""ControlLoop without sockets: watchdog on a fake clock, faults, commands, trace."""

from __future__ import annotations

import itertools
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from live_decode.config import ControlConfig
from live_decode.control.loop import STARTUP_GRACE_S, ActuatorSafetyError, ControlLoop
from live_decode.control.trace import COLUMNS, read_control_trace
from live_decode.messages import (
    WORKER_EVENTS,
    WORKER_READY,
    EosMsg,
    ErrorMsg,
    EventMsg,
    FrameStats,
    GapMsg,
    StatsMsg,
    WorkerStats,
)
from live_decode.transport.control import (
    LaserReply,
    ModeReply,
    SetLaser,
    SetMode,
    SetTarget,
    Status,
    StatusReply,
    TargetReply,
    reply_json,
)

from .conftest import FakeClock, RecordingActuator

FRAME_S = 0.02  # 50 frames/s
WORKER = WorkerStats(fps=50.0, latency_ms=30.0, queue_depth=0, dropped_upstream=0)


def stats(*densities: float, first: int = 0) -> StatsMsg:
    nan = math.nan
    rows = tuple(FrameStats(first + i, 1, d, nan, nan, nan) for i, d in enumerate(densities))
    return StatsMsg(frame_stats=rows, worker=WORKER)


def make_loop(
    actuator: RecordingActuator, clock: FakeClock, run_dir: Path | None = None, **cfg: Any
) -> ControlLoop:
    base: dict[str, Any] = {"mode": "auto", "safe_power_mw": 0.5, "watchdog_s": 1.0}
    return ControlLoop(ControlConfig(**(base | cfg)), actuator, clock=clock, run_dir=run_dir)


def run_frames(loop: ControlLoop, clock: FakeClock, frames: range, density: float | None) -> None:
    for f in frames:
        clock.advance(FRAME_S)
        if density is not None:
            loop.ingest(stats(density, first=f))
        loop.on_tick(f)


# --------------------------------------------------------------------------- watchdog
def test_no_stats_sets_the_safe_value_within_the_watchdog_time(
    actuator: RecordingActuator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    loop = make_loop(actuator, clock)
    run_frames(loop, clock, range(50), density=0.5)  # too few emitters: power goes up
    assert actuator.value > 5.0
    silent_from = clock.now
    caplog.set_level(logging.WARNING, logger="live_decode.control")
    frame = 50
    while actuator.value != 0.5:
        run_frames(loop, clock, range(frame, frame + 1), density=None)
        frame += 1
        assert clock.now - silent_from <= 1.0 + FRAME_S, "watchdog too late"
    assert clock.now - silent_from > 1.0  # not before its time either
    assert loop.watchdog.tripped and loop.controller.mode == "auto"
    [event] = [e for e in loop.events if e.is_safety]
    assert event.kind == "watchdog" and "no stats for" in event.message
    assert any("watchdog" in r.getMessage() for r in caplog.records)
    # Still no stats: it stays safe and does not report again.
    run_frames(loop, clock, range(frame, frame + 100), density=None)
    assert actuator.value == 0.5 and loop.safety_events == 1


def test_control_resumes_from_the_safe_value_when_stats_return(
    actuator: RecordingActuator, clock: FakeClock
) -> None:
    loop = make_loop(actuator, clock, max_rate_mw_per_frame=0.2)
    run_frames(loop, clock, range(10), density=0.5)
    run_frames(loop, clock, range(10, 70), density=None)
    assert actuator.value == 0.5
    run_frames(loop, clock, range(70, 80), density=0.5)
    assert [e.kind for e in loop.events][-1] == "resumed"
    ramp = actuator.history[actuator.history.index(0.5) :]
    steps = [b - a for a, b in itertools.pairwise(ramp)]
    assert 0 < max(steps) <= 0.2 + 1e-12  # a rate-limited ramp, not a jump back up


def test_the_watchdog_only_acts_when_the_loop_has_authority(
    actuator: RecordingActuator, clock: FakeClock
) -> None:
    loop = make_loop(actuator, clock, mode="off")
    run_frames(loop, clock, range(200), density=None)
    assert actuator.history == [] and not loop.watchdog.tripped
    # Switching auto on starts the clock then, not at start-up; before the first stats the
    # worker may still be loading, so the grace period applies instead of the watchdog time.
    loop.handle(SetMode("auto"))
    run_frames(loop, clock, range(200, 240), density=None)
    assert actuator.history == []
    clock.advance(STARTUP_GRACE_S)
    run_frames(loop, clock, range(240, 300), density=None)
    assert actuator.value == 0.5
    assert "since auto started" in loop.events[-1].message


# --------------------------------------------------------------------------- faults
def test_a_worker_error_sets_the_safe_value_and_mode_off(
    actuator: RecordingActuator, clock: FakeClock
) -> None:
    loop = make_loop(actuator, clock)
    run_frames(loop, clock, range(20), density=0.5)
    loop.ingest(ErrorMsg(code="cuda", message="out of memory"))
    run_frames(loop, clock, range(20, 21), density=0.5)
    assert actuator.value == 0.5
    assert loop.controller.mode == "off"
    kinds = [e.kind for e in loop.events]
    assert kinds[-2:] == ["worker_error", "mode"]
    assert "cuda: out of memory" in loop.events[-2].message
    run_frames(loop, clock, range(21, 60), density=0.1)
    assert actuator.value == 0.5  # stays there: mode off


def test_worker_eos_sets_the_safe_value_and_waits(
    actuator: RecordingActuator, clock: FakeClock
) -> None:
    loop = make_loop(actuator, clock)
    run_frames(loop, clock, range(20), density=0.5)
    loop.ingest(EosMsg(last_index=19))
    run_frames(loop, clock, range(20, 21), density=None)
    assert actuator.value == 0.5 and loop.controller.mode == "auto"
    assert loop.events[-1].kind == "worker_eos"
    run_frames(loop, clock, range(21, 150), density=None)  # the same fault: not reported twice
    assert loop.safety_events == 1
    run_frames(loop, clock, range(150, 160), density=0.5)  # a restarted worker
    assert loop.events[-1].kind == "resumed" and actuator.value > 0.5


def test_a_controller_exception_sets_the_safe_value_and_mode_off(
    actuator: RecordingActuator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = make_loop(actuator, clock)
    run_frames(loop, clock, range(20), density=0.5)
    assert actuator.value > 5.0

    def broken(*_: object, **__: object) -> None:
        raise ZeroDivisionError("bug in the law")

    monkeypatch.setattr(loop.controller, "update", broken)
    run_frames(loop, clock, range(20, 21), density=0.5)  # does not raise
    assert actuator.value == 0.5
    assert loop.controller.mode == "off" and loop.errors == 1
    assert loop.events[-2].kind == "exception" and "bug in the law" in loop.events[-2].message


def test_an_actuator_that_cannot_go_safe_stops_the_acquisition(
    actuator: RecordingActuator, clock: FakeClock
) -> None:
    loop = make_loop(actuator, clock)
    run_frames(loop, clock, range(5), density=0.5)
    actuator.fail = True
    loop.ingest(ErrorMsg(code="x", message="y"))
    with pytest.raises(ActuatorSafetyError, match="switch the laser off by hand"):
        loop.on_tick(5)


def test_faults_in_mode_off_are_reported_but_leave_the_laser(
    actuator: RecordingActuator, clock: FakeClock
) -> None:
    loop = make_loop(actuator, clock, mode="off")
    loop.ingest(ErrorMsg(code="cuda", message="lost"))
    loop.on_tick(0)
    assert actuator.history == []
    assert loop.events[-1].kind == "worker_error" and "left as set" in loop.events[-1].message


def test_own_events_and_gaps_are_not_faults(actuator: RecordingActuator, clock: FakeClock) -> None:
    loop = make_loop(actuator, clock)
    run_frames(loop, clock, range(5), density=1.0)
    loop.ingest(EventMsg(source="control", name="saturation", message="from ourselves", frame=4))
    loop.ingest(EventMsg(source=WORKER_EVENTS, name=WORKER_READY, message="demo"))
    loop.ingest(EventMsg(source=WORKER_EVENTS, name="model_mismatch_ignored", message="PSF"))
    loop.ingest(GapMsg(first=5, count=3))
    loop.on_tick(5)
    assert loop.safety_events == 0 and loop.frames_missing == 3
    reports = [e.message for e in loop.events if e.kind == "worker_report"]
    assert reports == ["model_mismatch_ignored: PSF"]  # the hello's answer is not logged


def test_never_commands_outside_the_limits(clock: FakeClock) -> None:
    act = RecordingActuator(value=3.0, limits=(1.0, 8.0))
    loop = make_loop(act, clock, min_power_mw=2.0, safe_power_mw=1.0, max_rate_mw_per_frame=5.0)
    densities = [0.0, 40.0, math.nan, 1e12, 0.3, -2.0, 1.0]
    for f in range(500):
        if f % 60 == 0:
            loop.handle(SetTarget(float(f % 7)))
        if f % 97 == 50:
            loop.ingest(ErrorMsg(code="boom", message=""))
            loop.handle(SetMode("auto"))
        clock.advance(FRAME_S if f % 200 else 1.5)
        loop.ingest(stats(densities[f % len(densities)], first=f))
        loop.on_tick(f)
    assert act.history and all(1.0 <= v <= 8.0 for v in act.history)


def test_a_safe_value_outside_the_limits_fails_at_start(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="safe_power_mw"):
        make_loop(RecordingActuator(limits=(1.0, 10.0)), clock, safe_power_mw=0.0)


# --------------------------------------------------------------------------- commands
def test_commands(actuator: RecordingActuator, clock: FakeClock) -> None:
    loop = make_loop(actuator, clock)
    assert loop.handle(SetTarget(2.0)) == TargetReply(2.0)
    with pytest.raises(ValueError, match="set_mode off"):
        loop.handle(SetLaser(9.0))
    assert loop.handle(SetMode("off")) == ModeReply("off")
    assert loop.handle(SetLaser(9.0)) == LaserReply(9.0)
    assert actuator.value == 9.0
    with pytest.raises(ValueError, match="outside"):
        loop.handle(SetLaser(1000.0))
    status = loop.handle(Status())
    assert isinstance(status, StatusReply)
    sent = json.loads(json.dumps(reply_json(status), allow_nan=False))  # what the server sends
    assert sent == loop.status()  # the wire format is the loop's JSON status, unchanged
    assert StatusReply.from_json(sent) == status  # what the viewer parses back
    assert status.mode == "off" and status.laser_mw == 9.0 and status.limits_mw == (0.0, 100.0)
    assert status.target_density_per_um2 == 2.0 and status.counts["safety_trips"] == 0
    assert [e.kind for e in loop.events] == ["target", "mode", "manual"]


# --------------------------------------------------------------------------- trace
def test_trace_rows_events_and_plot(
    actuator: RecordingActuator, clock: FakeClock, tmp_path: Path
) -> None:
    loop = make_loop(actuator, clock, run_dir=tmp_path)
    run_frames(loop, clock, range(30), density=0.5)
    run_frames(loop, clock, range(30, 90), density=None)
    loop.close()
    loop.close()  # idempotent
    assert (tmp_path / "control.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    trace = read_control_trace(tmp_path / "control.csv")
    assert list(trace.frame) == list(range(90))
    assert trace.density_per_um2[5] == 0.5 and math.isnan(trace.density_per_um2[60])
    assert trace.actuator_value[-1] == 0.5 and set(trace.target_per_um2) == {1.0}
    [safe_row] = [i for i, e in enumerate(trace.event) if e.startswith("watchdog: safe")]
    assert trace.actuator_value[safe_row] == 0.5
    assert (tmp_path / "control.png").stat().st_size > 10_000


# --------------------------------------------------------------------------- data age
def test_stale_stats_hold_the_integrator_and_are_counted(
    actuator: RecordingActuator, clock: FakeClock, tmp_path: Path
) -> None:
    loop = make_loop(actuator, clock, run_dir=tmp_path, max_stats_age_s=0.5, watchdog_s=10.0)
    run_frames(loop, clock, range(50), density=0.5)  # too few emitters: the power rises
    integral, power = loop.controller.integral, actuator.value
    # The worker lags 1 s (50 frames): each tick brings the stats of a frame 1 s old.
    for f in range(50, 150):
        clock.advance(FRAME_S)
        loop.ingest(stats(0.5, first=f - 50))
        loop.on_tick(f)
    assert loop.controller.integral == integral  # held
    assert actuator.value == pytest.approx(power, abs=1.0)  # only the slew to the last goal
    assert loop.stale_measurements == 100 and loop.stale_episodes == 1
    assert [e.kind for e in loop.events].count("stale") == 1
    assert loop.status()["stale"] is True and loop.status()["stale_episodes"] == 1
    run_frames(loop, clock, range(150, 160), density=0.5)  # fresh again: control goes on
    assert loop.events[-1].kind == "fresh" or any(e.kind == "fresh" for e in loop.events)
    assert loop.controller.integral > integral
    loop.close(plot=False)
    trace = read_control_trace(tmp_path / "control.csv")
    assert set(trace.held[50:150]) == {"stale"} and set(trace.held[150:]) == {""}
    assert trace.data_age_s[100] == pytest.approx(1.0) and trace.data_age_s[10] == 0.0


def test_after_a_trip_control_ramps_back_to_the_power_of_before(
    actuator: RecordingActuator, clock: FakeClock
) -> None:
    loop = make_loop(actuator, clock, max_rate_mw_per_frame=0.5, safe_power_mw=0.0)
    run_frames(loop, clock, range(100), density=1.0)  # at the target: the power holds
    before = actuator.value
    run_frames(loop, clock, range(100, 160), density=None)  # the worker stalls
    assert actuator.value == 0.0 and loop.counts()["watchdog_trips"] == 1
    # Stats return, still low (the laser was off): they describe the safe state, not the plant.
    ramp_end = 160 + round(before / 0.5)
    run_frames(loop, clock, range(160, ramp_end), density=0.0)
    assert actuator.value == pytest.approx(before)  # back where it was, not wound up
    assert loop.settling_measurements > 0
    assert loop.counts() | {"safety_trips": 1} == loop.counts()


def test_saturations_are_counted(actuator: RecordingActuator, clock: FakeClock) -> None:
    loop = make_loop(actuator, clock, max_rate_mw_per_frame=50.0, kp=20.0, ki=10.0)
    run_frames(loop, clock, range(40), density=0.0)  # wants more than 100 mW
    run_frames(loop, clock, range(40, 200), density=5.0)  # then less than 0
    assert loop.counts()["saturations"] == 2
