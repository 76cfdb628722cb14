"""``live-decode view RUN_DIR``: a finished run from its files, a live one at its endpoints."""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from live_decode.cli import view
from live_decode.endpoints import RunEndpoints
from live_decode.io.run_dir import EndpointsRecord, write_endpoints
from live_decode.viewer.run_files import load_run

from .recorded import LASER_MW, N_FRAMES, spots, write_recorded_run
from .synthetic import CAMERA_PX_NM, FOV_PX, SyntheticRun, make_locs

FOV_UM2 = FOV_PX[0] * FOV_PX[1] * (CAMERA_PX_NM / 1000) ** 2


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_recorded_run(tmp_path / "run")


def test_a_run_directory_reads_back(run_dir: Path) -> None:
    run = load_run(run_dir)
    n_locs = sum(len(spots(f)) for f in range(N_FRAMES) if f != 7)
    assert len(run.locs) == n_locs
    assert run.pixel_size_nm == CAMERA_PX_NM and run.frame_shape == FOV_PX
    assert [s.frame for s in run.stats] == list(range(N_FRAMES))
    assert run.stats[7].count == 0 and run.stats[7].density_per_um2 == 0
    assert np.isnan(run.stats[7].mean_photons)  # no localization: no mean
    assert run.stats[3].count == 4
    assert run.stats[3].density_per_um2 == pytest.approx(4 / FOV_UM2)
    assert run.stats[3].mean_photons == pytest.approx(2000.0)
    np.testing.assert_array_equal(run.laser_frames, np.arange(N_FRAMES))
    np.testing.assert_allclose(run.laser_mw, LASER_MW)
    assert run.target_per_um2 == 0.8
    assert run.raw is not None and run.raw.index == N_FRAMES - 1
    assert run.raw.pixels.shape == FOV_PX


def test_missing_localizations_say_what_is_wrong(tmp_path: Path) -> None:
    from live_decode.errors import LiveDecodeError

    with pytest.raises(LiveDecodeError, match="holds no localizations"):
        load_run(tmp_path)


qtpy = pytest.importorskip("qtpy")
from pytestqt.qtbot import QtBot  # noqa: E402

from live_decode.viewer.window import ViewerWindow, open_recorded_run  # noqa: E402


@pytest.fixture
def recorded_window(qtbot: QtBot, run_dir: Path) -> Iterator[ViewerWindow]:
    win = open_recorded_run(load_run(run_dir))
    qtbot.addWidget(win)
    win.show()
    yield win
    win.close()


@pytest.mark.qt
def test_a_finished_run_is_shown_from_its_files(
    qtbot: QtBot, recorded_window: ViewerWindow
) -> None:
    win = recorded_window
    n_locs = sum(len(spots(f)) for f in range(N_FRAMES) if f != 7)
    qtbot.waitUntil(lambda: win.receiver.health().draw_backlog == 0)
    win.refresh_render()
    assert win.sr.image.image.sum() == n_locs
    win.refresh_frame()  # the last raw frame, circled with its own localizations
    assert win.raw.frame is not None and win.raw.frame.index == N_FRAMES - 1
    x, y = win.raw.markers.getData()
    expected = np.asarray(spots(N_FRAMES - 1)) / CAMERA_PX_NM
    np.testing.assert_allclose(sorted(zip(x, y, strict=True)), expected)
    win.refresh_plots()
    frames, density = win.density.raw.getData()
    np.testing.assert_array_equal(frames, np.arange(N_FRAMES))
    assert density[3] == pytest.approx(4 / FOV_UM2) and density[7] == 0
    np.testing.assert_allclose(win.density.laser.getData()[1], LASER_MW)
    assert win.density.band.getRegion() == pytest.approx((0.64, 0.96))  # the run's target
    assert win.health.text()["stream"] == "ended"
    assert "no source to control" in win.controls.reply.text()
    assert not win.controls.feedback.isEnabled()
    assert win.model_line.text() == "demo_lite: temporal"  # from the run's locs.yaml
    assert win.raw.plot.titleLabel.text == f"raw frame {N_FRAMES - 1}"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="live-decode view")
    view.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.qt
def test_view_a_finished_run_directory(
    qapp: object, run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    (run_dir / "summary.json").write_text("{}", encoding="utf-8")
    shot = tmp_path / "finished.png"
    assert view.run(_parse(str(run_dir), "--seconds", "0.5", "--screenshot", str(shot))) == 0
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.qt
def test_view_joins_a_live_run_at_its_recorded_endpoints(
    qapp: object,
    synthetic_run: SyntheticRun,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    live = tmp_path / "live"
    write_endpoints(
        live,
        EndpointsRecord(
            RunEndpoints(
                results=synthetic_run.results.endpoint, preview=synthetic_run.preview.endpoint
            ),
            "",
            os.getpid(),
            False,
        ),
    )
    stop = threading.Event()
    seen: list[int] = []

    def stream() -> None:
        f = 0
        while not stop.is_set():
            synthetic_run.publish(make_locs(f, [(1000.0, 800.0)] * 5), [f], [0.2])
            synthetic_run.publish_preview(np.full(FOV_PX, 100 + f % 7, np.uint16), f)
            f += 1
            time.sleep(0.005)
        seen.append(f)

    thread = threading.Thread(target=stream)
    thread.start()
    shot = tmp_path / "live.png"
    try:
        assert view.run(_parse(str(live), "--seconds", "1", "--screenshot", str(shot))) == 0
    finally:
        stop.set()
        thread.join(5)
    assert shot.is_file() and seen
    assert f"joining the live run in {live}" in capsys.readouterr().err


@pytest.mark.qt
def test_a_run_without_raw_frames_says_so(qtbot: QtBot, run_dir: Path) -> None:
    (run_dir / "raw.ome.tif").unlink()
    win = open_recorded_run(load_run(run_dir))
    qtbot.addWidget(win)
    try:
        win.refresh_frame()
        assert win.raw.frame is None
        assert win.raw.plot.titleLabel.text == "raw frame: none recorded in this run"
    finally:
        win.close()
