"""MDAStream / MDASource on a real core: frames and MDA metadata, drops as gaps, the end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import useq
from pymmcore_plus.experimental.unicore import UniMMCore

from live_decode.config import MMSourceConfig, load_config
from live_decode.errors import ConfigError
from live_decode.sources.base import (
    FrameSource,
    HasActivationLaser,
    PacedByCamera,
    ReportsGaps,
    SourceGap,
)
from live_decode.sources.mda import MDASource, MDAStream, parse_sequence
from live_decode.sources.mm_camera import MMCamera
from live_decode.sources.mm_core import close_core
from live_decode.testing.mm import REPO_CONFIGS, open_sim_core, sim_config


@pytest.fixture(autouse=True)
def psygnal_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """The psygnal signals whatever Qt app an earlier test left (the Qt case is tested apart)."""
    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "psygnal")


@pytest.fixture
def core() -> Iterator[UniMMCore]:
    core = open_sim_core(sim_config(exposure_ms=2.0), mode="Fast")
    yield core
    close_core(core)


def _lapse(n: int) -> useq.MDASequence:
    return useq.MDASequence(time_plan={"interval": 0, "loops": n})


def _drain(stream: MDAStream) -> list[int]:
    out = []
    while (frame := stream.poll(0)) is not None:
        out.append(frame.index)
    return out


def test_frames_carry_what_the_mda_said(core: UniMMCore) -> None:
    stream = MDAStream(core, MMCamera(core), sequences=1)
    assert isinstance(stream, FrameSource) and isinstance(stream, ReportsGaps)
    assert isinstance(stream, PacedByCamera) and isinstance(stream, HasActivationLaser)
    core.run_mda(_lapse(20)).join()
    seen = []
    while (frame := stream.read()) is not None:
        cam = stream.camera
        index = cam.extra["mda_index"]
        assert isinstance(index, dict)
        seen.append((frame.index, index, cam.exposure_ms, frame.timestamp_ns))
        assert cam.extra["camera"] == "Camera" and cam.extra["mda_sequence"] == 0
        assert frame.pixels.shape == stream.shape_px == (32, 32)
    stream.close()
    assert [s[0] for s in seen] == list(range(20))
    assert [s[1] for s in seen] == [{"t": t} for t in range(20)]
    assert {s[2] for s in seen} == {2.0}
    stamps = [s[3] for s in seen]
    assert stamps == sorted(stamps)
    assert stream.take_gaps() == [] and stream.counts.frames_seen == 20
    assert stream.camera.pixel_size_nm == pytest.approx(100.0)  # the core's preset


def test_a_full_queue_drops_and_announces_the_gap_before_the_next_frame(core: UniMMCore) -> None:
    stream = MDAStream(core, MMCamera(core), queue_frames=3)
    core.run_mda(_lapse(10)).join()  # nobody reads: 3 queued, 7 dropped
    assert _drain(stream) == [0, 1, 2] and stream.take_gaps() == []
    assert stream.counts.frames_dropped == 7
    core.run_mda(_lapse(3)).join()  # the next sequence: indices go on
    first = stream.poll(0)
    assert first is not None and first.index == 10
    assert stream.take_gaps() == [SourceGap(first=3, count=7)]
    assert stream.last_info is not None and stream.last_info.sequence == 1
    assert dict(stream.last_info.event_index) == {"t": 0}
    assert _drain(stream) == [11, 12]
    stream.close()


def test_trailing_drops_are_reported_when_the_stream_ends(core: UniMMCore) -> None:
    stream = MDAStream(core, MMCamera(core), queue_frames=2, sequences=1)
    core.run_mda(_lapse(6)).join()
    assert [f.index for f in iter(stream.read, None)] == [0, 1]
    assert stream.take_gaps() == [SourceGap(first=2, count=4)]
    stream.close()


def test_a_closed_stream_listens_no_more(core: UniMMCore) -> None:
    before = len(core.mda.events.frameReady)
    stream = MDAStream(core, MMCamera(core))
    assert len(core.mda.events.frameReady) == before + 1
    stream.close()
    stream.close()
    assert len(core.mda.events.frameReady) == before
    core.run_mda(_lapse(3)).join()
    assert stream.read() is None and stream.counts.frames_seen == 0


def test_the_mda_source_runs_its_sequence_and_owns_its_core() -> None:
    cfg = load_config(REPO_CONFIGS / "mm_sim.yaml")
    mda = {"time_plan": {"interval": 0, "loops": 8}}
    cfg = cfg.model_copy(
        update={"source": cfg.source.model_copy(update={"mda": mda, "exposure_ms": 2})}
    )
    source = MDASource.from_config(cfg)
    try:
        assert source.activation_laser is not None and source.frame_interval_ms == 2.0
        assert [f.index for f in iter(source.read, None)] == list(range(8))
        assert source.calibration_sources["baseline_adu"] == "camera property Offset"
    finally:
        source.close()
    assert source.read() is None


def test_a_bad_sequence_is_refused_with_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="time_plan"):
        parse_sequence({"time_plan": {"interval": 0, "loops": "many"}})
    with pytest.raises(ConfigError, match="no such useq sequence file"):
        parse_sequence(tmp_path / "missing.yaml")
    text = (REPO_CONFIGS / "mm_sim.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  kind: mm\n", "  kind: mm\n  mda: {time_plan: {loops: x}}\n"))
    with pytest.raises(ConfigError, match=r"source.*mda"):
        load_config(bad)
    seq = tmp_path / "seq.yaml"
    seq.write_text("time_plan: {interval: 0, loops: 5}\n")
    good = tmp_path / "good.yaml"
    good.write_text(text.replace("  kind: mm\n", "  kind: mm\n  mda: seq.yaml\n"))
    src = load_config(good).source
    assert isinstance(src, MMSourceConfig)
    assert len(list(parse_sequence(src.mda))) == 5  # relative to the YAML


QT_CASE = """
from qtpy.QtWidgets import QApplication
app = QApplication([])
import useq
from live_decode.sources.mda import MDAStream
from live_decode.sources.mm_camera import MMCamera
from live_decode.sources.mm_core import close_core
from live_decode.testing.mm import open_sim_core, sim_config
core = open_sim_core(sim_config(exposure_ms=2.0), mode="Fast")
stream = MDAStream(core, MMCamera(core), sequences=1)
core.run_mda(useq.MDASequence(time_plan={"interval": 0, "loops": 10})).join()
print(type(core.mda.events).__name__, stream.counts.frames_seen, stream.ended,
      [f.index for f in iter(stream.read, None)])
stream.close()
close_core(core)
"""


@pytest.mark.qt
def test_with_a_qt_app_frames_are_taken_on_the_mda_thread(tmp_path: Path) -> None:
    """Where a Qt app runs (napari, pymmcore-gui) the core's signals are Qt signals: frames
    must still reach the bounded queue from the MDA's thread, not wait for the GUI's loop
    (the main thread runs no event loop here while it waits for the MDA).

    In a subprocess: a QApplication left in this session would turn every later test's core
    signals into Qt signals."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYMM_SIGNALS_BACKEND": "auto"}
    proc = subprocess.run(
        [sys.executable, "-c", QT_CASE], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == f"QMDASignaler 10 True {list(range(10))}"
