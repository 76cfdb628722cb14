"""The Quality plots, the drift-corrected render and the mismatch banner, offscreen (pytest-qt)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from live_decode.io.thunderstorm import write_thunderstorm_csv
from live_decode.messages import ErrorMsg, EventMsg, empty_locs
from live_decode.quality.tracker import QualityTracker
from live_decode.viewer.run_files import load_run

from .test_quality_view import CFG, FOV_NM, MISMATCH, blinking_locs

pytestmark = pytest.mark.qt
qtpy = pytest.importorskip("qtpy")

from pytestqt.qtbot import QtBot  # noqa: E402

from live_decode.viewer.window import ViewerWindow, open_recorded_run  # noqa: E402

N_FRAMES = 1000


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path) -> Iterator[ViewerWindow]:
    """A finished run with 150 nm × 100 nm of drift, its quality files written by the tracker."""
    drift = np.column_stack([np.linspace(0, 150, N_FRAMES), np.linspace(0, -100, N_FRAMES)])
    locs = blinking_locs(N_FRAMES, drift, seed=5)
    write_thunderstorm_csv(tmp_path / "locs.csv", locs)
    tracker = QualityTracker((FOV_NM, FOV_NM), CFG)
    for start in range(0, N_FRAMES, 100):  # in batches, as the supervisor feeds it
        tracker.add(locs[(locs["frame"] >= start) & (locs["frame"] < start + 100)])
    tracker.finish()
    tracker.write(tmp_path)
    win = open_recorded_run(load_run(tmp_path))
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.receiver.health().draw_backlog == 0, timeout=10_000)
    yield win
    win.close()


def test_quality_panel_shows_nena_frc_and_drift(window: ViewerWindow) -> None:
    window.refresh_plots()
    q = window.quality
    frames, nena = q.nena.getData()
    assert frames is not None and frames.tolist() == [200.0, 400.0, 600.0, 800.0, 1000.0]
    assert np.all(np.abs(nena - 12.0) < 2.0)
    assert np.isfinite(q.frc.getData()[1]).all()
    drift_frames, dx = q.dx.getData()
    assert len(drift_frames) == N_FRAMES and abs(float(dx[-1]) - 150.0) < 15.0
    assert abs(float(q.dy.getData()[1][-1]) + 100.0) < 15.0
    assert q.precision.titleLabel.text.startswith("NeNA 1")
    axis = q.drift.getAxis("left")
    axis.setRange(-0.4, 0.4)  # sub-nm drift: the label stays in nm, no SI prefix on "nm"
    assert axis.labelString().count("(nm)") == 1 and "mnm" not in axis.labelString()


def test_drift_corrected_toggle_sharpens_the_image(qtbot: QtBot, window: ViewerWindow) -> None:
    raw, settings = window.receiver.full_image()
    assert not settings.drift_corrected
    window.render_controls.drift_corrected.setChecked(True)

    def corrected_drawn() -> bool:
        _image, s = window.receiver.full_image()
        return s.drift_corrected and window.receiver.health().draw_backlog == 0

    qtbot.waitUntil(corrected_drawn, timeout=10_000)
    corrected, _ = window.receiver.full_image()
    assert corrected.sum() == pytest.approx(raw.sum())
    assert np.count_nonzero(corrected) < 0.8 * np.count_nonzero(raw)


def test_mismatch_banner_appears_and_clears(window: ViewerWindow) -> None:
    window.refresh_plots()
    assert not window.mismatch.isVisible()
    error = ErrorMsg("model_mismatch", MISMATCH)
    window.receiver._absorb(empty_locs(), [], None, [error], 1)
    window.refresh_plots()
    assert window.mismatch.isVisible()
    assert "1.874" in window.mismatch.text() and "[0.912, 1.103]" in window.mismatch.text()
    cleared = EventMsg("worker", "model_mismatch_cleared", "frame 990: back in the band")
    window.receiver._absorb(empty_locs(), [], None, [cleared], 1)
    window.refresh_plots()
    assert not window.mismatch.isVisible()
