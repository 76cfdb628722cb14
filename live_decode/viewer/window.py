"""The live viewer window: panels, controls and the timers that refresh them.

Data arrive on the :class:`~live_decode.viewer.receiver.Receiver`'s thread; this window only reads
its snapshots, on two timers: the raw frame at ~25 Hz and everything else (super-resolution
image, density plot, health) at ~7 Hz. Control commands go through a
:class:`~live_decode.viewer.control_link.ControlLink`, so no click waits on the network.
Closing the window stops both threads and closes their sockets; the pipeline runs on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QCloseEvent
from qtpy.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from live_decode.config import QualityConfig
from live_decode.endpoints import RunEndpoints
from live_decode.io.sr_image import write_sr_image
from live_decode.transport.control import StatusReply
from live_decode.transport.curve import ClientKeys
from live_decode.viewer.accumulator import RenderSettings
from live_decode.viewer.control_link import ControlLink, StatusCallback, laser_power_of
from live_decode.viewer.density import RateMeter
from live_decode.viewer.export import export_png, export_tiff
from live_decode.viewer.panels import DensityPlot, RawFramePanel, SuperResPanel
from live_decode.viewer.qt_check import check_qt_binding
from live_decode.viewer.quality_panel import QualityPlot
from live_decode.viewer.receiver import Receiver
from live_decode.viewer.render import percentile_levels
from live_decode.viewer.run_files import RecordedRun
from live_decode.viewer.side_panel import ControlsPanel, HealthPanel, RenderControls
from live_decode.viewer.snapshots import Detections, NetworkImage

log = logging.getLogger("live_decode.viewer.window")


@dataclass(frozen=True)
class ViewerOptions:
    """Refresh rates and display defaults.

    Parameters
    ----------
    frame_interval_ms
        Raw-frame refresh period (40 ms = 25 Hz).
    render_interval_ms
        Super-resolution refresh period (150 ms ≈ 7 Hz).
    plot_interval_ms
        Density plot, health and controls refresh period (500 ms).
    target_per_um2
        Initial density target (emitters µm⁻² frame⁻¹), shaded ± ``band_fraction``.
    laser_mw, max_laser_mw
        Initial and largest value of the manual laser power box.
    """

    frame_interval_ms: int = 40
    render_interval_ms: int = 150
    plot_interval_ms: int = 500
    target_per_um2: float = 1.0
    band_fraction: float = 0.2
    laser_mw: float = 0.0
    max_laser_mw: float = 100.0


class ViewerWindow(QMainWindow):
    """The live viewer; it owns (and on close stops) ``receiver`` and ``link``."""

    def __init__(
        self,
        receiver: Receiver,
        link: ControlLink | None = None,
        *,
        model_line: str = "",
        options: ViewerOptions | None = None,
    ) -> None:
        super().__init__()
        self.receiver = receiver
        self.link = link
        self.options = options or ViewerOptions()
        ep = receiver.endpoints
        self.setWindowTitle(f"live-decode view — {ep.results if ep else 'recorded run'}")
        self.raw = RawFramePanel()
        self.sr = SuperResPanel()
        self.render_controls = RenderControls(receiver.settings)
        self.density = DensityPlot()
        self.quality = QualityPlot()
        self.mismatch = QLabel("")
        self.mismatch.setStyleSheet(
            "QLabel { background: #c0182b; color: white; font-weight: bold; padding: 4px; }"
        )
        self.mismatch.setWordWrap(True)
        self.mismatch.hide()
        self.controls = ControlsPanel(
            link,
            target_per_um2=self.options.target_per_um2,
            laser_mw=self.options.laser_mw,
            max_laser_mw=self.options.max_laser_mw,
        )
        self.health = HealthPanel()
        self.model_line = QLabel(model_line or "model: unknown (pass --model to show its card)")
        self.model_line.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._build_layout()
        self.render_controls.settings_changed.connect(self._settings_changed)
        self.render_controls.reset.clicked.connect(self.receiver.reset)
        self.render_controls.fit.clicked.connect(self.sr.fit)
        self.render_controls.export_png.clicked.connect(self._ask_export_png)
        self.render_controls.export_tiff.clicked.connect(self._ask_export_tiff)
        self.controls.screenshot.clicked.connect(self._ask_screenshot)
        self.render_controls.percentile.valueChanged.connect(self._force_render)
        self.render_controls.source.currentIndexChanged.connect(self._force_render)
        self.frame_rate = RateMeter(window_s=2.0)  # raw-frame timer ticks: the GUI frame rate
        self.render_rate = RateMeter(window_s=2.0)
        self.frames_drawn = 0  # new preview frames drawn
        self.frame_ticks = 0
        self.render_ticks = 0
        self._shown_preview: tuple[int, bool] = (-1, False)  # (received, localized) shown
        self._detections: Detections | None = None
        self._render_key: tuple[object, ...] | None = None
        self._closed = False
        self.frame_timer = QTimer(self)
        self.frame_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.frame_timer.timeout.connect(self.refresh_frame)
        self.render_timer = QTimer(self)
        self.render_timer.timeout.connect(self.refresh_render)
        self.plot_timer = QTimer(self)
        self.plot_timer.timeout.connect(self.refresh_plots)
        self.frame_timer.start(self.options.frame_interval_ms)
        self.render_timer.start(self.options.render_interval_ms)
        self.plot_timer.start(self.options.plot_interval_ms)

    def _build_layout(self) -> None:
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.render_controls)
        side_layout.addWidget(self.controls)
        side_layout.addWidget(self.health)
        side_layout.addStretch(1)
        top = QSplitter(Qt.Orientation.Horizontal)
        for widget, stretch in ((self.raw, 2), (self.sr, 3), (side, 0)):
            top.addWidget(widget)
            top.setStretchFactor(top.indexOf(widget), stretch)
        top.setSizes([420, 760, 330])
        main = QSplitter(Qt.Orientation.Vertical)
        main.addWidget(top)
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.density)
        plots.addWidget(self.quality)
        plots.setSizes([750, 750])
        main.addWidget(plots)
        main.setSizes([600, 260])
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.model_line)
        layout.addWidget(self.mismatch)
        layout.addWidget(main, 1)
        self.setCentralWidget(central)
        self.resize(1500, 900)

    # ------------------------------------------------------------------ timers
    def refresh_frame(self) -> None:
        """Raw-frame tick: the newest frame whose detections arrived, circled (else the latest).

        A frame's localizations need frame t+1 and a trip through the worker, so they arrive
        after newer preview frames: the receiver keeps a few, and this shows the newest one that
        can be drawn with its detections (the latest frame alone only while none can).
        """
        self.frame_rate.add(1)
        self.frame_ticks += 1
        view = self.receiver.frame_to_show()
        if view is None:
            return
        key = (view.frame.received, view.localized)
        if key == self._shown_preview:
            return
        if view.frame.received != self._shown_preview[0]:
            self.raw.show_frame(view.frame)
            self.frames_drawn += 1
        self._shown_preview = key
        self._detections = view.detections
        self._show_detections()

    def _show_detections(self) -> None:
        if self.raw.frame is None:
            return
        s = self.receiver.settings
        self.raw.show_detections(self._detections, min_prob=s.min_prob, max_sigma_nm=s.max_sigma_nm)

    def refresh_render(self) -> None:
        """Render tick: the super-resolution image, if it or the view changed.

        That is the render of the localizations, or the network's own image (Deep-STORM) when
        one has arrived and the image choice says so (it does once the first one arrives).
        """
        self.render_rate.add(1)
        self.render_ticks += 1
        network = self.receiver.network_image()
        if network is not None:
            self.render_controls.offer_network_image()
        if network is not None and self.render_controls.shows_network_image:
            percentile = self.render_controls.percentile.value()
            key: tuple[object, ...] = ("network", network.version, percentile)
            if key != self._render_key:
                rows, cols = network.pixels.shape
                um = network.pixel_size_nm / 1000.0
                self.sr.show_network_image(network, percentile, (rows * um, cols * um))
                self._render_key = key
            return
        settings = self.receiver.settings
        region = self.sr.visible_region_px(settings.pixel_size_nm)
        side = self.sr.screen_side()
        key = (
            self.receiver.render_version(),
            region,
            side,
            self.render_controls.percentile.value(),
        )
        if key != self._render_key:
            rows, cols = region or (None, None)
            snap = self.receiver.render(rows, cols, max_side=side, wait=False)
            if snap is None:  # a batch is being drawn: keep the image, try on the next tick
                return
            um = snap.settings.pixel_size_nm / 1000.0
            extent = (snap.canvas_shape[0] * um, snap.canvas_shape[1] * um)
            self.sr.show_render(snap, self.render_controls.percentile.value(), extent)
            self._render_key = key

    def refresh_plots(self) -> None:
        """Plot tick: density and laser traces, health figures, control replies."""
        traces = self.receiver.traces()
        self.density.show_traces(traces)
        self.density.show_target(self.controls.current_target(), self.options.band_fraction)
        health = self.receiver.health()
        latest = float(traces.smoothed[-1]) if traces.smoothed.size else None
        self.density.show_rate(health.locs_per_s, latest)
        self.health.show_health(health, self.frame_rate.rate())
        self.quality.show_quality(self.receiver.quality())
        self.show_mismatch(self.receiver.mismatch_alarm())
        self.controls.refresh()
        status = self.link.status if self.link else None
        status_model = None if status is None else status.details.get("model")
        if isinstance(status_model, str) and self.model_line.text().startswith("model: unknown"):
            self.model_line.setText(status_model)

    def show_mismatch(self, banner: str) -> None:
        """The red model-mismatch banner while the alarm is raised; hidden when it clears."""
        if banner != self.mismatch.text():
            self.mismatch.setText(banner)
        self.mismatch.setVisible(bool(banner))

    def _force_render(self) -> None:
        self._render_key = None

    def _settings_changed(self) -> None:
        self.receiver.update_settings(self.render_controls.render_settings(self.receiver.settings))
        self._show_detections()

    # ------------------------------------------------------------------ files
    def _shown_network_image(self) -> NetworkImage | None:
        network = self.receiver.network_image()
        return network if network is not None and self.render_controls.shows_network_image else None

    def export_png(self, path: str | Path) -> Path:
        """The image shown (render or network image), whole, at the current percentile contrast."""
        network = self._shown_network_image()
        image = network.pixels if network is not None else self.receiver.full_image()[0]
        levels = percentile_levels(image, self.render_controls.percentile.value())
        return export_png(image, path, levels)

    def export_tiff(self, path: str | Path) -> Path:
        """The whole render as a 16-bit TIFF (:func:`~.export.export_tiff`); the network image
        as float32 with its pixel size (:func:`~live_decode.io.sr_image.write_sr_image`)."""
        network = self._shown_network_image()
        if network is not None:
            return write_sr_image(Path(path), network.pixels, network.pixel_size_nm, network.frames)
        image, settings = self.receiver.full_image()
        return export_tiff(image, path, settings)

    def save_screenshot(self, path: str | Path) -> Path:
        """The window as a PNG."""
        path = Path(path)
        if not self.grab().save(str(path), "PNG"):
            raise OSError(f"could not write the screenshot {path}: is the folder writable?")
        return path

    def _ask_path(self, title: str, default: str, pattern: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, title, default, pattern)
        return path or None

    def _ask_export_png(self) -> None:
        if path := self._ask_path("Export render as PNG", "render.png", "PNG (*.png)"):
            self.export_png(path)

    def _ask_export_tiff(self) -> None:
        if path := self._ask_path("Export render as 16-bit TIFF", "render.tif", "TIFF (*.tif)"):
            self.export_tiff(path)

    def _ask_screenshot(self) -> None:
        if path := self._ask_path("Save screenshot", "viewer.png", "PNG (*.png)"):
            self.save_screenshot(path)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop the timers and the background threads (closing their sockets); idempotent."""
        if self._closed:
            return
        self._closed = True
        for timer in (self.frame_timer, self.render_timer, self.plot_timer):
            timer.stop()
        self.receiver.stop()
        if self.link is not None:
            self.link.stop()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


def _laser_recorder(receiver: Receiver) -> StatusCallback:
    """Put the laser power of each status reply on the receiver's laser trace."""

    def record(status: StatusReply) -> None:
        power = laser_power_of(status)
        if power is not None:
            receiver.record_laser(power)

    return record


def open_viewer(
    endpoints: RunEndpoints,
    *,
    curve: ClientKeys | None = None,
    settings: RenderSettings | None = None,
    model_line: str = "",
    options: ViewerOptions | None = None,
    quality: QualityConfig | None = None,
) -> ViewerWindow:
    """Start a receiver (and a control link if ``endpoints.control``) and make the window.

    A QApplication must exist; a Qt binding known to crash is refused (:mod:`.qt_check`). Show
    the window with ``.show()``; closing it stops everything.

    Raises
    ------
    LiveDecodeError
        If a socket cannot be opened (the message says which and why).
    """
    check_qt_binding()
    receiver = Receiver(endpoints, curve=curve, settings=settings, quality=quality)
    receiver.start()
    link: ControlLink | None = None
    try:
        if endpoints.control is not None:
            link = ControlLink(endpoints.control, curve=curve, on_status=_laser_recorder(receiver))
            link.start()
        return ViewerWindow(receiver, link, model_line=model_line, options=options)
    except BaseException:
        receiver.stop()
        if link is not None:
            link.stop()
        raise


def open_recorded_run(
    run: RecordedRun,
    *,
    settings: RenderSettings | None = None,
    model_line: str = "",
    options: ViewerOptions | None = None,
    quality: QualityConfig | None = None,
) -> ViewerWindow:
    """A window on a finished run read from its files (:func:`~.run_files.load_run`).

    The super-resolution image, density and laser traces and the last raw frame (if recorded)
    with its detections; no sockets, no controls. A QApplication must exist.
    """
    check_qt_binding()
    receiver = Receiver(None, settings=settings, quality=quality)
    receiver.start()
    try:
        receiver.load_recorded(run)
        base = options or ViewerOptions()
        if run.target_per_um2 is not None:
            base = replace(base, target_per_um2=run.target_per_um2)
        line = model_line or run.model_line
        window = ViewerWindow(receiver, None, model_line=line, options=base)
    except BaseException:
        receiver.stop()
        raise
    window.setWindowTitle(f"live-decode view — {run.run_dir} (finished)")
    window.controls.reply.setText(f"recorded run {run.run_dir}: no source to control")
    if run.raw is None:
        window.raw.plot.setTitle("raw frame: none recorded in this run")
    return window
