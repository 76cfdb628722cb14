"""The viewer window offscreen, driven by a synthetic run on real sockets (pytest-qt)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from live_decode.transport.control import SetLaser, SetMode, SetTarget
from live_decode.viewer.accumulator import RenderSettings
from live_decode.viewer.receiver import Receiver

from .synthetic import (
    CAMERA_PX_NM,
    FOV_PX,
    ControlFixture,
    SyntheticRun,
    make_locs,
    wait_until,
)

pytestmark = pytest.mark.qt
qtpy = pytest.importorskip("qtpy")

from pytestqt.qtbot import QtBot  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

from live_decode.viewer.window import ViewerOptions, ViewerWindow, open_viewer  # noqa: E402

SCREENSHOT = Path("/tmp/viewer_screenshot.png")
NETWORK_SCREENSHOT = Path("/tmp/viewer_network_image.png")
FAST = ViewerOptions(
    frame_interval_ms=20, render_interval_ms=50, plot_interval_ms=100, target_per_um2=0.5
)


@pytest.fixture
def window(
    qtbot: QtBot, synthetic_run: SyntheticRun, control_server: ControlFixture
) -> Iterator[ViewerWindow]:
    win = open_viewer(
        synthetic_run.endpoints(control_server.endpoint),
        settings=RenderSettings(pixel_size_nm=20.0),
        model_line="demo_lite: temporal, 32 filters, PSF gaussian, 100 nm px, emccd, 0 steps",
        options=FAST,
    )
    qtbot.addWidget(win)
    win.resize(1400, 850)
    win.show()
    synthetic_run.sync(win.receiver)
    yield win
    win.close()
    assert not win.receiver.running


def test_histogram_panel_shows_counts_in_the_right_pixels(
    qtbot: QtBot, window: ViewerWindow, synthetic_run: SyntheticRun
) -> None:
    synthetic_run.publish(make_locs(1, [(1010.0, 210.0)] + [(4790.0, 30.0)] * 3), [1], [0.5])
    wait_until(lambda: window.receiver.health().locs_received == 4)
    wait_until(lambda: window.receiver.health().draw_backlog == 0)
    window.refresh_render()
    shown = window.sr.image.image
    assert window.sr.image.image is not None and shown.shape == (160, 240)  # bin factor 1
    assert shown[10, 50] == 1 and shown[1, 239] == 3 and shown.sum() == 4
    rect = window.sr.image.mapRectToParent(window.sr.image.boundingRect())
    assert (rect.left(), rect.top()) == (0.0, 0.0)
    assert rect.width() == pytest.approx(FOV_PX[1] * CAMERA_PX_NM / 1000)  # 4.8 µm wide: x
    assert rect.height() == pytest.approx(FOV_PX[0] * CAMERA_PX_NM / 1000)
    # A filter set in the GUI applies to what is drawn.
    window.render_controls.min_prob.setValue(0.95)
    qtbot.waitUntil(lambda: window.receiver.render_version() and _drawn_sum(window) == 0)


def _drawn_sum(window: ViewerWindow) -> float:
    window.refresh_render()
    return float(window.sr.image.image.sum())


def test_density_trace_shows_the_published_values(
    window: ViewerWindow, synthetic_run: SyntheticRun
) -> None:
    densities = [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]
    locs = np.concatenate([make_locs(f, [(500.0, 500.0)]) for f in range(10, 16)])
    synthetic_run.publish(locs, list(range(10, 16)), densities)
    wait_until(lambda: len(window.receiver.traces().frames) == 6)
    window.refresh_plots()
    x, y = window.density.raw.getData()
    np.testing.assert_array_equal(x, np.arange(10, 16))
    np.testing.assert_allclose(y, densities)
    low, high = window.density.band.getRegion()
    # The source reports its controller's target (1.0), which wins over the start value (0.5).
    assert (low, high) == pytest.approx((0.8, 1.2))  # target ± 20 %
    assert "worker" in window.health.text() and "987" in window.health.text()["worker"]
    assert window.model_line.text().startswith("demo_lite")


def _synced(window: ViewerWindow) -> bool:
    window.refresh_plots()
    return window.controls.synced is not None


def _synced_mode(window: ViewerWindow) -> str | None:
    synced = window.controls.synced
    return None if synced is None else synced.mode


def _synced_laser(window: ViewerWindow) -> float | None:
    synced = window.controls.synced
    return None if synced is None else synced.laser_mw


def test_controls_send_the_right_messages(
    qtbot: QtBot, window: ViewerWindow, control_server: ControlFixture
) -> None:
    qtbot.waitUntil(lambda: _synced(window), timeout=5000)  # enabled once the source answered
    window.controls.laser.setValue(12.5)
    qtbot.mouseClick(window.controls.set_laser, Qt.MouseButton.LeftButton)
    window.controls.target.setValue(0.8)
    qtbot.mouseClick(window.controls.set_target, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(window.controls.feedback, Qt.MouseButton.LeftButton)
    expected = [
        SetLaser(12.5),
        SetTarget(0.8),
        SetMode("auto"),
    ]
    qtbot.waitUntil(lambda: control_server.source.commands == expected, timeout=5000)
    # The source's status comes back: laser trace, band at the reported target, reply line.
    qtbot.waitUntil(lambda: 12.5 in window.receiver.traces().laser_mw, timeout=5000)
    window.refresh_plots()
    assert window.density.band.getRegion() == pytest.approx((0.64, 0.96))
    assert "set_mode auto: ok" in window.controls.reply.text()


def test_detections_are_drawn_on_the_frame_that_has_them(
    window: ViewerWindow, synthetic_run: SyntheticRun
) -> None:
    """Localizations of frame t arrive after the previews of t+1, t+2: t is shown with them."""
    rng = np.random.default_rng(3)
    for index in (10, 11, 12):
        synthetic_run.publish_preview(rng.poisson(5, FOV_PX).astype(np.uint16) + 100, index)
        wait_until(lambda i=index: window.receiver.latest_frame().index == i)  # type: ignore[union-attr, misc]
    window.refresh_frame()  # no results yet: the newest frame, without circles
    assert window.raw.frame is not None and window.raw.frame.index == 12
    assert window.raw.markers_shown == 0
    spots = {10: [(1050.0, 650.0), (3050.0, 2250.0)], 11: [(450.0, 1450.0)]}
    synthetic_run.publish(make_locs(10, spots[10]), [10], [0.2])
    wait_until(lambda: window.receiver.latest_result_frame() == 10)
    window.refresh_frame()
    assert window.raw.frame.index == 10 and window.raw.marker_frame == 10
    assert window.raw.markers_shown == 2
    x, y = window.raw.markers.getData()
    np.testing.assert_allclose(sorted(zip(x, y, strict=True)), [(10.5, 6.5), (30.5, 22.5)])
    pixels_10 = window.raw.image.image
    synthetic_run.publish(make_locs(11, spots[11]), [11], [0.1])
    wait_until(lambda: window.receiver.latest_result_frame() == 11)
    window.refresh_frame()
    assert window.raw.frame.index == 11 and window.raw.markers_shown == 1
    assert not np.array_equal(window.raw.image.image, pixels_10)  # frame 11's own pixels
    synthetic_run.publish(make_locs(12, []), [12], [0.0])  # frame 12: localized, nothing found
    wait_until(lambda: window.receiver.latest_result_frame() == 12)
    window.refresh_frame()
    assert window.raw.frame.index == 12 and window.raw.markers_shown == 0


def test_controls_mirror_the_source_state(
    qtbot: QtBot, window: ViewerWindow, control_server: ControlFixture
) -> None:
    """A source in closed loop at 8.69238 mW shows as feedback on, 8.69 mW, its target."""
    source = control_server.source
    source.mode, source.laser_mw, source.target = "auto", 8.69238, 0.7
    qtbot.waitUntil(lambda: _synced(window) and _synced_mode(window) == "auto", timeout=5000)
    c = window.controls
    assert c.feedback.isChecked() and c.feedback.isEnabled()
    assert c.laser.value() == pytest.approx(8.69) and c.laser.text() == "8.69 mW"
    assert not c.laser.isEnabled() and not c.set_laser.isEnabled()  # the controller drives it
    assert c.target.value() == pytest.approx(0.7) and c.target.isEnabled()
    assert "source: laser 8.69 mW, mode auto, target 0.7 µm⁻²" in c.reply.text()
    # Back to manual, as another client would switch it: the widgets follow.
    source.mode, source.laser_mw = "off", 2.5
    qtbot.waitUntil(lambda: _synced(window) and _synced_mode(window) == "off", timeout=5000)
    assert not c.feedback.isChecked() and c.laser.isEnabled() and c.laser.value() == 2.5


def test_controls_wait_for_the_source(qtbot: QtBot, synthetic_run: SyntheticRun) -> None:
    """With no source answering, nothing pretends to be its state: the inputs stay disabled."""
    win = open_viewer(synthetic_run.endpoints("tcp://127.0.0.1:9"), options=FAST)
    qtbot.addWidget(win)
    try:
        qtbot.wait(300)
        win.refresh_plots()
        assert not win.controls.feedback.isEnabled() and not win.controls.laser.isEnabled()
        assert "no status from tcp://127.0.0.1:9 yet" in win.controls.reply.text()
    finally:
        win.close()


def test_colour_by_z_from_the_render_controls(
    qtbot: QtBot, window: ViewerWindow, synthetic_run: SyntheticRun
) -> None:
    locs = make_locs(1, [(1010.0, 210.0), (3010.0, 1210.0)])
    locs["z_nm"] = [-300.0, 300.0]
    synthetic_run.publish(locs, [1], [0.1])
    wait_until(lambda: window.receiver.health().locs_received == 2)
    window.render_controls.colour.setCurrentText("z")
    qtbot.waitUntil(lambda: window.receiver.settings.colour == "z")
    wait_until(lambda: window.receiver.render(wait=True).view.values is not None)  # type: ignore[union-attr]
    wait_until(lambda: window.receiver.health().draw_backlog == 0)
    window.refresh_render()
    shown = window.sr.image.image
    assert shown.ndim == 3 and shown.shape[2] == 3  # an RGB picture: hue = z
    low, high = shown[10, 50].astype(int), shown[60, 150].astype(int)
    assert low[2] > low[0] and high[0] > high[2]  # −300 nm blue end, +300 nm red end
    assert "z -300 … 300 nm" in window.sr.title.text


def test_screenshot_of_a_streaming_run(
    qtbot: QtBot, window: ViewerWindow, synthetic_run: SyntheticRun, tmp_path: Path
) -> None:
    _stream_structure(synthetic_run, frames=600)
    wait_until(lambda: window.receiver.latest_result_frame() == 599, what="the last frame")
    window.render_controls.gaussian.setChecked(True)
    qtbot.waitUntil(lambda: window.receiver.settings.gaussian)
    wait_until(lambda: window.receiver.render(wait=True).settings.gaussian)  # type: ignore[union-attr]
    wait_until(lambda: window.receiver.health().draw_backlog == 0, what="the re-render")
    qtbot.wait(200)  # timers redraw
    window.refresh_plots()
    path = window.save_screenshot(tmp_path / "viewer.png")
    shutil.copy(path, SCREENSHOT)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    window.refresh_render()
    assert window.sr.image.image.sum() > 1000
    assert window.raw.markers_shown > 0  # the last frame's detections are circled
    # At least one preview frame reached the raw panel (how many depends on how the 25 Hz timer
    # and the burst of 600 published frames interleave on a busy machine).
    assert window.frames_drawn >= 1
    png = window.export_png(tmp_path / "render.png")
    tif = window.export_tiff(tmp_path / "render.tif")
    assert png.stat().st_size > 0 and tif.stat().st_size > 0


def test_window_closes_cleanly_mid_stream(
    qtbot: QtBot, window: ViewerWindow, synthetic_run: SyntheticRun
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    endpoints = synthetic_run.endpoints()

    def stream() -> None:
        f = 0
        try:
            while not stop.is_set():
                synthetic_run.publish(make_locs(f, [(100.0, 100.0)] * 20), [f], [0.3])
                if f % 20 == 0:
                    synthetic_run.publish_preview(np.zeros(FOV_PX, np.uint16), f)
                f += 1
                time.sleep(0.001)
        except BaseException as exc:  # surfaces in the test below
            errors.append(exc)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        qtbot.waitUntil(lambda: window.receiver.health().locs_received > 1000, timeout=5000)
        receiver, link = window.receiver, window.link
        started = time.monotonic()
        window.close()
        assert time.monotonic() - started < 2.0
        assert not receiver.running and receiver.context is not None and receiver.context.closed
        assert link is not None and not link.running
        names = {t.name for t in threading.enumerate()}
        assert "viewer-receiver" not in names and "viewer-control" not in names
        # The pipeline goes on, and a restarted viewer joins it.
        again = Receiver(endpoints)
        again.start()
        try:
            wait_until(lambda: again.health().locs_received > 0, what="the restarted viewer")
        finally:
            again.stop()
    finally:
        stop.set()
        thread.join(5)
    assert not errors


def _stream_structure(run: SyntheticRun, frames: int) -> None:
    """A ring and two crossing filaments, ~12 emitters per frame, with preview frames."""
    rng = np.random.default_rng(1)
    h_nm, w_nm = FOV_PX[0] * CAMERA_PX_NM, FOV_PX[1] * CAMERA_PX_NM
    yy, xx = np.indices(FOV_PX)
    for f in range(frames):
        n = int(rng.poisson(12))
        kind = rng.integers(0, 3, n)
        t = rng.uniform(0, 1, n)
        angle = 2 * np.pi * t
        x = np.where(
            kind == 0,
            1400 + 900 * np.cos(angle),
            np.where(kind == 1, 300 + t * 4200, 2600 + t * 1800),
        )
        y = np.where(
            kind == 0,
            1600 + 900 * np.sin(angle),
            np.where(kind == 1, 400 + t * 2400, 2900 - t * 2700),
        )
        x = np.clip(x + rng.normal(0, 12, n), 0, w_nm - 1)
        y = np.clip(y + rng.normal(0, 12, n), 0, h_nm - 1)
        locs = make_locs(f, list(zip(x.tolist(), y.tolist(), strict=True)), sigma_nm=14.0)
        locs["prob"] = rng.uniform(0.6, 1.0, n)
        locs["sigma_x_nm"] = rng.uniform(8, 22, n)
        locs["sigma_y_nm"] = rng.uniform(8, 22, n)
        density = n / (h_nm * w_nm / 1e6)
        run.publish(locs, [f], [density])
        if f % 10 == 0 or f == frames - 1:
            pixels = rng.poisson(20, FOV_PX).astype(np.float64) + 100
            for xi, yi in zip(x / CAMERA_PX_NM, y / CAMERA_PX_NM, strict=True):
                pixels += 300 * np.exp(
                    -((xx + 0.5 - xi) ** 2 + (yy + 0.5 - yi) ** 2) / (2 * 1.3**2)
                )
            run.publish_preview(pixels.astype(np.uint16), f)
        if f % 50 == 0:
            time.sleep(0.002)


def _network_images(run: SyntheticRun, frames: int, upsampling: int = 4) -> np.ndarray:
    """Stream the structure and, as a Deep-STORM worker does, its summed density image every
    50 frames (each message the whole sum); returns the last image sent."""
    from scipy import ndimage

    from live_decode.messages import ImageMsg

    _stream_structure(run, frames)
    rows, cols = FOV_PX[0] * upsampling, FOV_PX[1] * upsampling
    px = CAMERA_PX_NM / upsampling
    rng = np.random.default_rng(2)
    total = np.zeros((rows, cols), np.float32)
    for f in range(0, frames, 50):  # a ring and a line, drawn as the network's density would be
        t = rng.uniform(0, 1, 600)
        y = np.r_[1600 + 900 * np.sin(2 * np.pi * t[:300]), 400 + t[300:] * 2400]
        x = np.r_[1400 + 900 * np.cos(2 * np.pi * t[:300]), 300 + t[300:] * 4200]
        spikes, _, _ = np.histogram2d(
            y, x, bins=(rows, cols), range=((0, rows * px), (0, cols * px))
        )
        total += ndimage.gaussian_filter(spikes.astype(np.float32), 1.0)
        last = min(f + 49, frames - 1)
        run.results.publish(ImageMsg(total.copy(), px, frames=last + 1, last_frame=last))
    return total


def test_the_network_image_of_a_deepstorm_worker_is_shown(
    qtbot: QtBot, window: ViewerWindow, synthetic_run: SyntheticRun, tmp_path: Path
) -> None:
    from live_decode.io.sr_image import read_sr_image

    controls = window.render_controls
    assert not controls.source.isEnabled()  # no network image yet: the choice is off
    last = _network_images(synthetic_run, frames=200)
    wait_until(lambda: window.receiver.latest_result_frame() == 199, what="the last frame")
    wait_until(
        lambda: (im := window.receiver.network_image()) is not None and im.frames == 200,
        what="the last network image",
    )
    window.refresh_render()
    assert controls.source.isEnabled() and controls.shows_network_image  # chosen on arrival
    np.testing.assert_array_equal(window.sr.image.image, last)
    rect = window.sr.image.mapRectToParent(window.sr.image.boundingRect())
    assert (rect.left(), rect.top()) == (0.0, 0.0)
    assert rect.width() == pytest.approx(FOV_PX[1] * CAMERA_PX_NM / 1000)  # the camera's field
    assert rect.height() == pytest.approx(FOV_PX[0] * CAMERA_PX_NM / 1000)
    assert "network image, 200 frames, 25.0 nm px" in window.sr.title.text
    qtbot.wait(200)
    window.refresh_plots()
    shutil.copy(window.save_screenshot(tmp_path / "viewer.png"), NETWORK_SCREENSHOT)
    tif = window.export_tiff(tmp_path / "network.tif")  # what is shown: float32, 25 nm pixels
    saved, pixel_nm, frames = read_sr_image(tif)
    np.testing.assert_array_equal(saved, last)
    assert pixel_nm == 25.0 and frames == 200
    # Back to the localizations' render, at its own pixel size.
    controls.source.setCurrentText("localizations")
    wait_until(lambda: window.receiver.health().draw_backlog == 0, what="drawing")
    window.refresh_render()
    assert window.sr.image.image.shape == (160, 240) and window.sr.title.text == "super-resolution"


def test_the_installed_qt_binding_keeps_none_alive() -> None:
    from live_decode.viewer.qt_check import check_qt_binding

    check_qt_binding()  # PySide6 6.12.0 on Python 3.11 fails here: see qt_check's docstring


class _Laser:
    """A 405 nm laser at a controller's last value, as the real actuators report it."""

    name = "test laser"
    limits = (0.0, 50.0)

    def __init__(self, power_mw: float) -> None:
        self.power_mw = power_mw

    def get(self) -> float:
        return self.power_mw

    def set(self, value: float) -> float:
        self.power_mw = value
        return value


def test_controls_mirror_a_real_control_loop(
    qtbot: QtBot, ctx: object, synthetic_run: SyntheticRun
) -> None:
    """The source's own handler (ControlLoop) in closed loop at 8.69238 mW, target 0.7 µm⁻²."""
    from live_decode.config import ControlConfig
    from live_decode.control.loop import ControlLoop
    from live_decode.transport.control import ControlServer

    laser = _Laser(8.69238)
    loop = ControlLoop(ControlConfig(mode="auto", target_density_per_um2=0.7), laser)
    server = ControlServer(ctx, loop.handle, "tcp://127.0.0.1:*")
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 20), daemon=True)
    thread.start()
    win = open_viewer(synthetic_run.endpoints(server.endpoint), options=FAST)
    qtbot.addWidget(win)
    win.show()  # clicks reach visible widgets only
    try:
        qtbot.waitUntil(lambda: _synced(win), timeout=5000)
        c = win.controls
        assert c.feedback.isChecked() and c.laser.text() == "8.69 mW" and not c.laser.isEnabled()
        assert c.target.value() == pytest.approx(0.7)
        assert (c.laser.minimum(), c.laser.maximum()) == laser.limits
        # Feedback off in the viewer: the loop goes manual, the laser can be set by hand.
        qtbot.mouseClick(c.feedback, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: _synced(win) and c.laser.isEnabled(), timeout=5000)
        assert loop.controller.mode == "off" and not c.feedback.isChecked()
        c.laser.setValue(3.25)
        qtbot.mouseClick(c.set_laser, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: laser.power_mw == 3.25, timeout=5000)
        qtbot.waitUntil(lambda: _synced(win) and _synced_laser(win) == 3.25, timeout=5000)
        assert c.laser.value() == 3.25 and "laser 3.25 mW, mode off" in c.reply.text()
    finally:
        win.close()
        stop.set()
        thread.join(5)
        server.close()
