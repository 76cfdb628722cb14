"""Starting a run from napari: the config is checked, the run starts, the live widget shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_live_decode._live_widget import SR_LAYER
from napari_live_decode._start_widget import StartRunWidget

pytestmark = pytest.mark.qt


@pytest.mark.timeout(600)
def test_a_run_started_from_the_widget_shows_live_and_ends_completed(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path
) -> None:
    viewer = make_napari_viewer()
    widget = StartRunWidget(viewer)
    widget.frames.setValue(60)
    widget.out.setText(str(tmp_path / "run"))
    widget.start_button.click()
    try:
        qtbot.waitUntil(lambda: widget.live is not None, timeout=120_000)
        qtbot.waitUntil(
            lambda: (
                SR_LAYER in viewer.layers
                and float(np.asarray(viewer.layers[SR_LAYER].data).sum()) > 0
            ),
            timeout=120_000,
        )
        qtbot.waitUntil(lambda: "run ended (completed" in widget.status.text(), timeout=240_000)
    finally:
        if widget.handle is not None and widget.handle.running:
            widget.handle.stop()
        widget.wait(timeout_s=180)
        if widget.live is not None:
            widget.live.close_session()
    assert widget.result is not None and widget.result.summary["frames_in"] == 60
    assert (tmp_path / "run" / "summary.json").is_file()
    assert widget.start_button.isEnabled() and not widget.stop_button.isEnabled()


def test_a_bad_config_is_refused_before_any_process_starts(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("camera:\n  pixel_size_nm: -5\n", encoding="utf-8")
    widget = StartRunWidget(make_napari_viewer())
    widget.config.setText(str(bad))
    widget.start_button.click()
    assert widget.status.text().startswith("config refused:")
    assert "pixel_size_nm" in widget.status.text()
    assert widget.handle is None and widget.start_button.isEnabled()
