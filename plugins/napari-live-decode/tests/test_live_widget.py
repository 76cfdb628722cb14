"""The live dock widget on a real running pipeline (``ld.run`` on the embedded demo), then on
the finished run's directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import live_decode as ld
from napari_live_decode._live_widget import (
    LOCS_LAYER,
    NET_LAYER,
    RAW_LAYER,
    SR_LAYER,
    LiveDecodeWidget,
)

pytestmark = pytest.mark.qt
SCREENSHOT_ENV = "NAPARI_LIVE_DECODE_SCREENSHOT"
"""Set to a PNG path to save a screenshot of napari during the live run (the README's)."""


def _filled(viewer: Any) -> bool:
    layers = viewer.layers
    return (
        SR_LAYER in layers
        and float(np.asarray(layers[SR_LAYER].data).sum()) > 0
        and LOCS_LAYER in layers
        and len(layers[LOCS_LAYER].data) > 0
    )


@pytest.mark.timeout(600)  # a busy 2-core machine: the waits below have their own limits
def test_the_widget_shows_a_running_pipeline(
    make_napari_viewer: Any, qtbot: Any, demo_run: Callable[[], ld.RunHandle]
) -> None:
    viewer = make_napari_viewer()
    widget = LiveDecodeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="live-decode")
    run = demo_run()
    session = widget.watch(run)
    try:
        assert session.kind == "live" and session.control is not None
        qtbot.waitUntil(lambda: _filled(viewer), timeout=120_000)
        assert run.running  # shown while the run goes on, not read from its files after
        # Target and feedback controls reach the source (the demo runs its density loop).
        # The controls are enabled when bound; the first status then sets the feedback box
        # from the source's loop mode (the demo has one).
        link = session.control
        qtbot.waitUntil(lambda: link.status is not None, timeout=30_000)
        waiting = "waiting for the source's status"
        qtbot.waitUntil(lambda: waiting not in widget.controls.reply.text(), timeout=10_000)
        status = link.status
        assert status is not None and status.mode is not None
        assert widget.controls.feedback.isEnabled()
        widget.controls.target.setValue(0.5)
        widget.controls.set_target.click()
        reply = widget.controls.reply
        qtbot.waitUntil(lambda: "set_target 0.5: ok" in reply.text(), timeout=30_000)
        qtbot.waitUntil(lambda: widget.controls.target_per_um2 == 0.5, timeout=30_000)
        sr, points = viewer.layers[SR_LAYER], viewer.layers[LOCS_LAYER]
        # Render pixels of 10 nm, placed in nm: the layer's scale is the pixel size.
        assert tuple(sr.scale) == (10.0, 10.0) and tuple(sr.translate) == (5.0, 5.0)
        assert [str(u) for u in sr.units] == ["nanometer", "nanometer"]
        # The demo field is 64 × 64 px of 100 nm: every point lies on it (nm, (y, x)).
        assert np.all((points.data >= 0) & (points.data <= 6400))
        frames = points.features["frame"].to_numpy()
        assert frames.max() - frames.min() < widget.latest.value()  # only the newest frames
        first = float(np.asarray(sr.data).sum())
        qtbot.waitUntil(lambda: float(np.asarray(sr.data).sum()) > first, timeout=60_000)
        assert viewer.layers[RAW_LAYER].data.shape == (64, 64)
        assert tuple(viewer.layers[RAW_LAYER].scale) == (100.0, 100.0)
        qtbot.waitUntil(lambda: widget.traces.point_count() > 0, timeout=10_000)
        assert "live" in widget.health.text() or "stalled" in widget.health.text()
        shot = os.environ.get(SCREENSHOT_ENV)
        if shot:
            viewer.window._qt_window.resize(1400, 900)
            viewer.reset_view()
            qtbot.wait(1000)
            viewer.screenshot(path=shot, canvas_only=False, flash=False)
    finally:
        widget.close_session()
        run.stop()  # the next test opens the finished run
    assert not session.receiver.running


@pytest.mark.timeout(600)
def test_the_widget_opens_the_finished_run_directory(
    make_napari_viewer: Any, qtbot: Any, demo_run: Callable[[], ld.RunHandle]
) -> None:
    run = demo_run()
    result = run.wait(timeout_s=180)
    # "interrupted" when the test before stopped it early, as it does.
    assert result is not None and result.status in ("completed", "interrupted")
    viewer = make_napari_viewer()
    widget = LiveDecodeWidget(viewer)
    session = widget.open_run_dir(run.out)
    try:
        assert session.kind == "finished" and session.control is None
        qtbot.waitUntil(lambda: _filled(viewer), timeout=30_000)
        n = len(ld.read_locs(Path(run.out) / "locs.csv"))
        # Every localization of the run is in the image (histogram: one count each).
        qtbot.waitUntil(
            lambda: round(float(np.asarray(viewer.layers[SR_LAYER].data).sum())) == n,
            timeout=30_000,
        )
        assert not widget.controls.set_target.isEnabled()
        assert "ended" in widget.health.text()
    finally:
        widget.close_session()


def test_a_deepstorm_runs_own_image_is_a_layer_in_nm(
    make_napari_viewer: Any, qtbot: Any, loc_files: dict[str, Path]
) -> None:
    from live_decode.io.sr_image import SR_IMAGE_NAME, write_sr_image

    run_dir = loc_files["csv"].parent
    image = np.random.default_rng(3).gamma(0.3, 1.0, (256, 256)).astype(np.float32)
    write_sr_image(run_dir / SR_IMAGE_NAME, image, pixel_nm=25.0, frames=20)
    viewer = make_napari_viewer()
    widget = LiveDecodeWidget(viewer)
    widget.open_run_dir(run_dir)
    try:
        qtbot.waitUntil(lambda: NET_LAYER in viewer.layers, timeout=30_000)
        layer = viewer.layers[NET_LAYER]
        np.testing.assert_array_equal(np.asarray(layer.data), image)
        assert tuple(layer.scale) == (25.0, 25.0)  # nm, as every layer of the plugin
        assert tuple(layer.translate) == (12.5, 12.5)  # pixel centres: [i·px, (i+1)·px)
        names = [lay.name for lay in viewer.layers]
        assert names.index(NET_LAYER) > names.index(SR_LAYER)  # drawn above the render
    finally:
        widget.close_session()


def test_a_directory_without_a_run_is_refused_with_the_reason(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    widget = LiveDecodeWidget(make_napari_viewer())
    with pytest.raises(ld.LiveDecodeError, match="holds no localizations"):
        widget.open_run_dir(tmp_path)
    assert widget.session is None
