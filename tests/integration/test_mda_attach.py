"""``ld.attach`` on a real pymmcore-plus core: ``run_mda`` → worker process → localizations.

The simulated SMLM camera and its 405 nm laser are Python devices of a real ``UniMMCore``; the
DemoCamera is Micro-Manager's C++ adapter. The worker is the real ``live-decode worker`` process
(with the tiny model of ``conftest.py``, so the pipeline, not the network, is what is measured).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tifffile
import useq
from pymmcore_plus import CMMCorePlus
from pymmcore_plus.experimental.unicore import UniMMCore
from pymmcore_plus.mda import FinishReason

import live_decode as ld
from live_decode.config import Config
from live_decode.errors import ModelCardError
from live_decode.sources.mm_core import close_core
from live_decode.testing.mm import DEMOCAM_MISSING, REPO_CONFIGS, democam_available, open_sim_core

LASER_MW = 5.0


def _config(exposure_ms: float, frame_queue: int = 64) -> Config:
    """The demo physics (what the tiny model's card was made for) at ``exposure_ms``.

    A queue of 64 frames lets a worker that a busy machine stalls for a second catch up by
    batching instead of dropping (the default 16 dropped 12 % of the frames on a loaded VM).
    """
    cfg = ld.demo_config()
    mic = cfg.microscope.model_copy(
        update={"exposure_ms": exposure_ms, "frame_interval_ms": exposure_ms}
    )
    transport = cfg.transport.model_copy(update={"frame_queue": frame_queue})
    return cfg.model_copy(update={"microscope": mic, "transport": transport})


@pytest.fixture(autouse=True)
def psygnal_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """The psygnal signals whatever Qt app an earlier test left (the Qt case: test_mda_stream)."""
    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "psygnal")


@pytest.fixture
def sim_core() -> Iterator[tuple[UniMMCore, Config]]:
    cfg = _config(25.0)
    core = open_sim_core(cfg, laser_mw=LASER_MW)
    yield core, cfg
    close_core(core)


def _time_lapse(frames: int) -> useq.MDASequence:
    return useq.MDASequence(time_plan={"interval": 0, "loops": frames})


def _localized_frames(out: Path) -> set[int]:
    return set(ld.read_locs(out / "locs.csv")["frame"].astype(int))


def _frames_log(out: Path) -> list[dict[str, str]]:
    with (out / "mda_frames.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_200_frame_mda_is_localized_and_the_controller_drives_the_laser(
    sim_core: tuple[UniMMCore, Config], tiny_model: Path, tmp_path: Path
) -> None:
    """The acceptance case. The frame queue holds the whole sequence, so a worker that a
    loaded machine slows (seen: 10x, 66 of 200 frames with a 64-frame queue) catches up by
    batching; drops when the queue is short are the next test's subject. The controller acts
    on stats while the MDA runs (8 s), and on late ones too (``max_stats_age_s``)."""
    core, _ = sim_core
    cfg = _config(40.0, frame_queue=256)
    # the watchdog (no stats for 1 s: safe power) would move the laser too: only the PI may
    control = cfg.control.model_copy(update={"max_stats_age_s": 60, "watchdog_s": 60})
    cfg = cfg.model_copy(update={"control": control})
    core.setExposure(40.0)
    out = tmp_path / "run"
    with ld.attach(core, cfg, out=out, model=tiny_model, laser="Laser405.Power") as att:
        core.run_mda(_time_lapse(200)).join()
    result = att.close()
    assert result.status == "completed", result.reason
    summary = result.summary
    mda = summary["mda"]
    assert isinstance(mda, dict)
    assert mda["frames_seen"] == 200 and mda["sequences_finished"] == 1
    # >= 95 % of the frames went through the network (a frame may hold no emitter)
    assert int(summary["frames_processed"]) >= 0.95 * 200, summary
    worker = json.loads((out / "worker_summary.json").read_text())
    assert worker["first_frame"] == 0 and worker["last_frame"] == 199
    assert int(summary["localizations"]) > 0 and _localized_frames(out) <= set(range(200))
    # every frame the worker did not get is counted: dropped at the pump or sent
    assert summary["frames_in"] == 200
    assert summary["frames_sent"] == summary["frames_processed"]
    assert summary["frames_dropped"] == 200 - summary["frames_sent"]
    # the MDA's metadata went along with every frame
    rows = _frames_log(out)
    assert [json.loads(r["event_index"]) for r in rows] == [{"t": t} for t in range(200)]
    assert {r["camera"] for r in rows} == {"Camera"} and {r["exposure_ms"] for r in rows} == {"40"}
    times = [float(r["runner_time_ms"]) for r in rows]
    assert times == sorted(times) and times[-1] > 200 * 40 * 0.9
    # the density controller changed the laser on the user's core, then set it safe at close
    with (out / "control.csv").open(newline="") as f:
        powers = {float(r["actuator_value"]) for r in csv.DictReader(f)}
    assert len(powers - {LASER_MW, cfg.control.safe_power_mw}) > 3, powers  # the PI's outputs
    assert summary["control"]["safety_trips"] == 0  # type: ignore[index]
    assert float(core.getProperty("Laser405", "Power")) == cfg.control.safe_power_mw
    assert summary["control"] is not None


def test_frames_the_worker_cannot_take_are_counted_as_gaps(
    tiny_model: Path, tmp_path: Path
) -> None:
    """A 1-frame queue and a camera at 500 frames/s: the MDA runs at its own speed and every
    frame the worker did not get is a counted drop, announced to the worker as a gap."""
    cfg = _config(2.0, frame_queue=1)
    core = open_sim_core(cfg, mode="Fast")
    out = tmp_path / "run"
    try:
        with ld.attach(core, cfg, out=out, model=tiny_model, queue_frames=4) as att:
            thread = core.run_mda(_time_lapse(300))
            thread.join(30)
        result = att.close()
    finally:
        close_core(core)
    assert not thread.is_alive()
    summary = result.summary
    mda = summary["mda"]
    assert isinstance(mda, dict) and mda["frames_seen"] == 300
    dropped = int(summary["frames_dropped"]) + int(mda["frames_dropped_before_sending"])
    assert dropped > 0, summary
    assert int(summary["frames_sent"]) + dropped == 300
    worker = json.loads((out / "worker_summary.json").read_text())
    assert worker["dropped_upstream"] == dropped  # every drop reached the worker as a gap
    assert worker["frames_processed"] == summary["frames_sent"]
    assert summary["frames_rejected"] == 0


def test_an_ome_tiff_writer_still_gets_every_frame(
    sim_core: tuple[UniMMCore, Config], tiny_model: Path, tmp_path: Path
) -> None:
    core, cfg = sim_core
    raw = tmp_path / "raw.ome.tiff"
    with ld.attach(core, cfg, out=tmp_path / "run", model=tiny_model) as att:
        core.run_mda(_time_lapse(40), output=raw).join()
    result = att.close()
    assert result.status == "completed", result.reason
    stack = tifffile.imread(raw)
    assert stack.shape[0] == 40 and stack.shape[-2:] == (64, 64)
    assert len(_localized_frames(tmp_path / "run")) >= 30  # the worker got them too


def test_a_worker_that_dies_cancels_the_mda_and_keeps_what_it_localized(
    sim_core: tuple[UniMMCore, Config], tiny_model: Path, tmp_path: Path
) -> None:
    core, cfg = sim_core
    out = tmp_path / "run"
    att = ld.attach(core, cfg, out=out, model=tiny_model, laser="Laser405.Power")
    try:
        thread = core.run_mda(_time_lapse(3000))  # 60 s unless cancelled
        deadline = time.monotonic() + 30
        while att.state.frames_localized < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert att.state.frames_localized >= 30
        assert att.worker is not None
        os.kill(att.worker.pid, signal.SIGKILL)
        thread.join(20)
        assert not thread.is_alive(), "the MDA was not cancelled"
        assert core.mda.status.finish_reason == FinishReason.CANCELED
        assert att.failure is not None and "SIGKILL" in att.failure
    finally:
        result = att.close()
    assert result.status == "failed" and result.reason == att.failure
    assert len(_localized_frames(out)) > 0  # flushed batch by batch before the kill
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mda"]["sequences_canceled"] == 1
    assert summary["mda"]["cancelled_because"] == att.failure
    assert float(core.getProperty("Laser405", "Power")) == cfg.control.safe_power_mw


@pytest.fixture
def democam() -> Iterator[CMMCorePlus]:
    if not democam_available():
        pytest.skip(DEMOCAM_MISSING)
    core = CMMCorePlus()
    core.loadSystemConfiguration(str(REPO_CONFIGS / "mm_democam.cfg"))
    core.setProperty("Camera", "OnCameraCCDXSize", 64)
    core.setProperty("Camera", "OnCameraCCDYSize", 64)
    yield core
    close_core(core)


def test_the_democamera_streams_through_an_attachment(
    democam: CMMCorePlus, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = ld.load_config(REPO_CONFIGS / "mm_democam.yaml")
    with ld.attach(
        democam, cfg, out=out, model=tiny_model, ignore_model_mismatch=True, sequences=1
    ) as att:
        democam.run_mda(_time_lapse(60)).join()
    result = att.close()
    assert result.status == "completed", result.reason
    assert result.summary["frames_in"] == 60
    assert len(_frames_log(out)) == 60
    assert result.summary["frames_processed"] == result.summary["frames_sent"]


def test_a_refused_model_fails_at_attach_and_leaves_the_core_as_it_was(
    democam: CMMCorePlus, tmp_path: Path
) -> None:
    cfg = ld.load_config(REPO_CONFIGS / "mm_democam.yaml")
    listeners = len(democam.mda.events.frameReady)
    with pytest.raises(ModelCardError, match=r"EM gain|read noise|pixel"):
        ld.attach(democam, cfg, out=tmp_path / "run")  # the bundled EMCCD model
    assert len(democam.mda.events.frameReady) == listeners
    democam.run_mda(_time_lapse(3)).join()  # the core still works
    assert democam.mda.status.finish_reason == FinishReason.COMPLETED
