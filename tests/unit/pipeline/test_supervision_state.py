"""Pure parts of supervision: how a child ended, the run directory, the run's running totals."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from live_decode.errors import ConfigError, ModelCardError
from live_decode.messages import (
    WORKER_EVENTS,
    WORKER_READY,
    ErrorMsg,
    EventMsg,
    FrameStats,
    StatsMsg,
    WorkerStats,
)
from live_decode.pipeline.density_trace import DensityTrace
from live_decode.pipeline.exits import (
    ChildExit,
    StopSignal,
    classify,
    interrupt_exit_code,
    read_exit,
    run_recorded,
)
from live_decode.pipeline.run_dir import prepare_run_dir
from live_decode.pipeline.supervisor import Outcome, RunState, frames_never_localized, write_summary

WORKER = WorkerStats(fps=10.0, latency_ms=5.0, queue_depth=0, dropped_upstream=0)


def _stats(frames: range, density: float) -> StatsMsg:
    return StatsMsg(
        frame_stats=tuple(FrameStats(f, 2, density, 1000.0, 10.0, 12.0) for f in frames),
        worker=WORKER,
    )


# --------------------------------------------------------------------------- exits
def test_each_way_a_body_ends_is_recorded_with_its_exit_code(tmp_path: Path) -> None:
    assert run_recorded("worker", tmp_path, lambda: (0, "end of stream")) == 0
    assert read_exit(tmp_path, "worker") == ChildExit("worker", "done", 0, "end of stream")

    def refuse() -> tuple[int, str]:
        raise ModelCardError("model 'x' does not match: pixel size")

    def bad() -> tuple[int, str]:
        raise ConfigError("control.safe_power_mw = 1e9 is outside the limits")

    def crash() -> tuple[int, str]:
        raise ZeroDivisionError("division by zero")

    for body, status, code, text in (
        (refuse, "refused", 2, "pixel size"),
        (bad, "bad_input", 2, "safe_power_mw"),
        (crash, "crashed", 1, "ZeroDivisionError"),
    ):
        with pytest.raises(Exception):  # noqa: B017 - passed on unchanged
            run_recorded("source", tmp_path, body)
        record = read_exit(tmp_path, "source")
        assert record is not None
        assert (record.status, record.exit_code) == (status, code)
        assert text in record.reason
        assert classify("source", code, record) == record
        assert classify("source", code, record).restartable == (status == "crashed")


def test_a_kill_or_a_stale_record_is_classified_from_the_exit_status() -> None:
    killed = classify("source", -signal.SIGKILL, None)
    assert (killed.status, killed.reason) == ("killed", "source killed by SIGKILL")
    assert killed.restartable
    crashing = ChildExit("source", "crashed", 1, "source crashed: OSError")
    assert classify("source", -signal.SIGKILL, crashing).status == "killed"
    # It had finished and written why; a signal only cut its interpreter's shutdown short.
    done = ChildExit("worker", "done", 0, "stopped")
    assert classify("worker", -signal.SIGTERM, done) == done
    assert classify("worker", 1, None).status == "crashed"
    assert classify("worker", 2, ChildExit("worker", "done", 0, "a previous run")).status == (
        "bad_input"
    )


def test_stop_signals_exit_128_plus_the_signal() -> None:
    assert interrupt_exit_code(KeyboardInterrupt()) == 130
    assert interrupt_exit_code(StopSignal(signal.SIGTERM)) == 143
    assert interrupt_exit_code(StopSignal(signal.SIGHUP)) == 129


# --------------------------------------------------------------------------- run directory
def test_a_run_directory_with_results_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    prepare_run_dir(out, overwrite=False)  # new: created
    prepare_run_dir(out, overwrite=False)  # empty: fine
    (out / "locs.csv").write_text("old results")
    (out / "notes.txt").write_text("the user's own file")
    with pytest.raises(ConfigError, match=r"locs\.csv.*--overwrite"):
        prepare_run_dir(out, overwrite=False)
    assert (out / "locs.csv").read_text() == "old results"
    prepare_run_dir(out, overwrite=True)
    assert not (out / "locs.csv").exists()
    assert (out / "notes.txt").exists()  # only the run's own files are deleted


def test_a_file_in_the_way_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        prepare_run_dir(tmp_path / "run", overwrite=False)


# --------------------------------------------------------------------------- totals
def test_run_state_keeps_totals_and_a_bounded_recent_window() -> None:
    state = RunState()
    state.absorb(_stats(range(0, 1000), 1.0))
    state.absorb(_stats(range(1000, 1100), 3.0))
    assert state.frames_localized == 1100
    assert state.localizations == 2200
    assert state.mean_density_per_um2 == pytest.approx((1000 * 1.0 + 100 * 3.0) / 1100)
    assert state.recent_density_per_um2() == pytest.approx(3.0)
    assert len(state.recent) == 50
    for i in range(250):
        state.note(f"error {i}")
    assert state.n_errors == 250 and len(state.errors) == 100
    state.absorb(EventMsg(source=WORKER_EVENTS, name=WORKER_READY, message="demo"))
    state.absorb(EventMsg(source="control", name="mode", message="mode auto"))
    assert state.n_errors == 250  # notices are no errors
    state.absorb(ErrorMsg(code="frames_lost", message="3 frames"))
    assert state.n_errors == 251 and state.errors[-1] == "frames_lost: 3 frames"


def test_density_trace_stays_bounded_and_keeps_the_mean() -> None:
    trace = DensityTrace(max_points=64)
    frames = np.arange(10_000)
    density = np.sin(frames / 500.0) + 2.0
    for f, d in zip(frames, density, strict=True):
        trace.add(int(f), float(d))
    assert len(trace) <= 64
    x, y = trace.arrays()
    assert np.all(np.diff(x) > 0) and x[0] < 200 and x[-1] > 9_800
    # Each point is the mean over its frames: on the curve, within the curvature of a block.
    np.testing.assert_allclose(y, np.sin(x / 500.0) + 2.0, atol=0.02)


def test_frames_never_localized_are_counted_and_summary_is_strict_json(tmp_path: Path) -> None:
    worker = {"frames_processed": 150, "frames_lost_on_restart": 20, "rejected_messages": 0}
    source = {"frames_read": 400, "frames_sent": 400, "frames_dropped": 0}
    assert frames_never_localized(source, worker) == 230
    (tmp_path / "worker_summary.json").write_text(json.dumps({**worker, "fps": float("nan")}))
    (tmp_path / "source_summary.json").write_text(json.dumps(source))
    state = RunState()
    outcome = Outcome("failed", 1, "worker killed by SIGKILL after the source had finished")
    summary = write_summary(tmp_path, state, outcome, worker_died=True)
    assert summary["frames_lost_on_restart"] == 250
    text = (tmp_path / "summary.json").read_text()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in summary.json"))
    assert data["status"] == "failed" and data["exit_code"] == 1
    assert "SIGKILL" in data["reason"]

    offline = write_summary(tmp_path, RunState(), live=False)
    for key in ("frames_dropped", "frames_lost_on_restart", "latency_ms_p50", "worker_restarts"):
        assert key not in offline
