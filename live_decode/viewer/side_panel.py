"""The widgets beside the plots: render controls, acquisition controls, health figures."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from qtpy.QtCore import Signal  # type: ignore[attr-defined]  # qtpy re-exports it
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from live_decode.transport.control import StatusReply
from live_decode.viewer.accumulator import COLOURS, RenderSettings
from live_decode.viewer.control_link import FEEDBACK_MODES, ControlLink, laser_power_of
from live_decode.viewer.density import Health

LASER_DECIMALS: Final = 2
"""The laser box shows 0.01 mW steps (a controller's 8.69238 mW shows as 8.69 mW)."""
MANUAL_MODE: Final = FEEDBACK_MODES[False]
"""The controller mode in which the laser is set by hand (feedback off)."""
IMAGE_SOURCES: Final = ("localizations", "network image")
"""What the super-resolution panel shows: the render of the localizations, or the image the
network yields itself (Deep-STORM's summed density; only such a network has one)."""


def _spin(
    low: float, high: float, value: float, step: float, decimals: int, suffix: str = ""
) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setKeyboardTracking(False)  # act on Enter / focus loss, not on every digit typed
    return box


class RenderControls(QGroupBox):
    """Image source, pixel size, Gaussian rendering, prob/σ filters, contrast, reset, export."""

    settings_changed = Signal()

    def __init__(self, settings: RenderSettings, parent: QWidget | None = None) -> None:
        super().__init__("Super-resolution", parent)
        self.source = QComboBox()
        self.source.addItems(IMAGE_SOURCES)
        self.source.setEnabled(False)  # until a network image arrives
        self.source.setToolTip(
            "localizations: render of the localization list; network image: the image the "
            "network yields itself (Deep-STORM), available once the worker publishes one"
        )
        self.pixel_size = _spin(1.0, 200.0, settings.pixel_size_nm, 1.0, 1, " nm")
        self.pixel_size.setToolTip("render pixel size")
        self.gaussian = QCheckBox("Gaussian σ")
        self.gaussian.setChecked(settings.gaussian)
        self.gaussian.setToolTip("draw each localization with its predicted uncertainty")
        self.drift_corrected = QCheckBox("Drift-corrected")
        self.drift_corrected.setChecked(settings.drift_corrected)
        self.drift_corrected.setToolTip(
            "shift each localization by the live drift estimate at its frame (files stay raw)"
        )
        self.min_prob = _spin(0.0, 1.0, settings.min_prob, 0.05, 2)
        self.min_prob.setToolTip("draw only localizations with detection probability ≥ this")
        sigma = settings.max_sigma_nm if math.isfinite(settings.max_sigma_nm) else 0.0
        self.max_sigma = _spin(0.0, 1000.0, sigma, 5.0, 0, " nm")
        self.max_sigma.setSpecialValueText("off")  # 0 shows as "off": no σ limit
        self.max_sigma.setToolTip("draw only localizations with σ ≤ this (0 = off)")
        self.colour = QComboBox()
        self.colour.addItems(COLOURS)
        self.colour.setCurrentText(settings.colour)
        self.colour.setToolTip("density: one colour scale; z (3-D) or time: hue = mean z / frame")
        self.percentile = _spin(50.0, 100.0, 99.5, 0.1, 1, " %")
        self.percentile.setToolTip("white level: this percentile of the non-zero pixels")
        self.reset = QPushButton("Reset")
        self.fit = QPushButton("Fit view")
        self.export_png = QPushButton("Export PNG…")
        self.export_tiff = QPushButton("Export TIFF…")
        form = QFormLayout(self)
        form.addRow("image", self.source)
        form.addRow("pixel", self.pixel_size)
        form.addRow(self.gaussian)
        form.addRow(self.drift_corrected)
        form.addRow("prob ≥", self.min_prob)
        form.addRow("σ ≤", self.max_sigma)
        form.addRow("colour", self.colour)
        form.addRow("white", self.percentile)
        for pair in ((self.reset, self.fit), (self.export_png, self.export_tiff)):
            row = QHBoxLayout()
            for button in pair:
                row.addWidget(button)
            form.addRow(row)
        for box in (self.pixel_size, self.min_prob, self.max_sigma):
            box.valueChanged.connect(self.settings_changed)
        self.gaussian.toggled.connect(self.settings_changed)
        self.drift_corrected.toggled.connect(self.settings_changed)
        self.colour.currentIndexChanged.connect(self.settings_changed)

    @property
    def shows_network_image(self) -> bool:
        return self.source.currentIndex() == IMAGE_SOURCES.index("network image")

    def offer_network_image(self) -> None:
        """A network image arrived: enable the choice and, the first time, show it."""
        if not self.source.isEnabled():
            self.source.setEnabled(True)
            self.source.setCurrentIndex(IMAGE_SOURCES.index("network image"))

    def render_settings(self, base: RenderSettings) -> RenderSettings:
        """``base`` with the values shown in the widgets."""
        sigma = self.max_sigma.value()
        return RenderSettings(
            pixel_size_nm=self.pixel_size.value(),
            gaussian=self.gaussian.isChecked(),
            min_prob=self.min_prob.value(),
            max_sigma_nm=sigma if sigma > 0 else math.inf,
            max_kernel_radius_px=base.max_kernel_radius_px,
            colour=COLOURS[self.colour.currentIndex()],
            drift_corrected=self.drift_corrected.isChecked(),
        )


class ControlsPanel(QGroupBox):
    """Target density, feedback on/off and manual laser power, sent through a ControlLink.

    The widgets mirror the source's state: every status reply (polled by the link at connect,
    every half second and right after each command) sets the feedback box from the controller
    mode, the laser box from the commanded power (and its range from the actuator's limits) and
    the target box from the controller's target, except a box the user is editing. Until the
    first reply they are disabled: a value the source never had is never shown as its state.
    The laser can be set by hand only with feedback off (the controller drives it otherwise).
    """

    def __init__(
        self,
        link: ControlLink | None,
        *,
        target_per_um2: float = 1.0,
        laser_mw: float = 0.0,
        max_laser_mw: float = 100.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Controls", parent)
        self.link = link
        self.target = _spin(0.0, 100.0, target_per_um2, 0.1, 2, " µm⁻²")
        self.set_target = QPushButton("Set target")
        self.feedback = QCheckBox("Feedback (closed loop)")
        self.feedback.setToolTip("on: the controller drives the laser to hold the target density")
        self.laser = _spin(0.0, max_laser_mw, laser_mw, 0.5, LASER_DECIMALS, " mW")
        self.set_laser = QPushButton("Set laser")
        self.reply = QLabel("")
        self.reply.setWordWrap(True)
        self.screenshot = QPushButton("Save screenshot…")
        form = QFormLayout(self)
        row = QHBoxLayout()
        row.addWidget(self.target)
        row.addWidget(self.set_target)
        form.addRow("target", row)
        form.addRow(self.feedback)
        row = QHBoxLayout()
        row.addWidget(self.laser)
        row.addWidget(self.set_laser)
        form.addRow("laser", row)
        form.addRow(self.reply)
        form.addRow(self.screenshot)
        self.sent_target = target_per_um2
        self.synced: StatusReply | None = None  # the status reply the widgets show
        self._inputs = (self.target, self.set_target, self.feedback, self.laser, self.set_laser)
        for w in self._inputs:
            w.setEnabled(False)
        if link is None:
            self.reply.setText("no control endpoint: controls disabled")
            return
        self.set_target.clicked.connect(self._send_target)
        self.feedback.clicked.connect(link.set_feedback)  # clicked: user actions only
        self.set_laser.clicked.connect(self._send_laser)

    def _send_target(self) -> None:
        if self.link is not None:
            self.sent_target = self.target.value()
            self.link.set_target(self.sent_target)

    def _send_laser(self) -> None:
        if self.link is not None:
            self.link.set_laser(self.laser.value())

    def refresh(self) -> None:
        """Show the latest command's reply and the source's status; mirror it in the widgets."""
        if self.link is None:
            return
        parts = []
        last = self.link.last_reply
        if last is not None:
            parts.append(last.describe())
        status = self.link.status
        if status is not None:
            parts.append("source: " + describe_status(status))
            if status is not self.synced:
                self.mirror(status)
            parts.extend(_loop_health(status))
        else:
            parts.append(f"source: no status from {self.link.endpoint} yet")
        self.reply.setText("\n".join(parts))

    def mirror(self, status: StatusReply) -> None:
        """Set the widgets to a status reply's mode, laser power (and limits) and target."""
        self.synced = status
        mode = status.mode
        feedback = mode is not None and mode != MANUAL_MODE
        self.feedback.setEnabled(mode is not None)
        if mode is not None:
            self.feedback.setChecked(feedback)
        if status.limits_mw is not None:
            low, high = status.limits_mw
            if low <= high:
                self.laser.setRange(low, high)
        power = laser_power_of(status)
        if power is not None and not self.laser.hasFocus():
            self.laser.setValue(round(power, LASER_DECIMALS))
        for w in (self.laser, self.set_laser):
            w.setEnabled(power is not None and not feedback)
        target = _number(status.target_density_per_um2)
        if target is not None:
            if not self.target.hasFocus():
                self.target.setValue(round(target, 2))
            self.sent_target = target
        for w in (self.target, self.set_target):
            w.setEnabled(target is not None)

    def current_target(self) -> float:
        """The target the controller reports, else the one last sent or set at start."""
        status = self.link.status if self.link else None
        reported = None if status is None else _number(status.target_density_per_um2)
        return self.sent_target if reported is None else reported


def _number(value: object) -> float | None:
    """``value`` as a float if it is a number (not a bool, not NaN), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        return float(value)
    return None


def describe_status(status: StatusReply) -> str:
    """One line: ``laser 8.69 mW, mode auto, target 1 µm⁻²`` (3 significant digits)."""
    power = laser_power_of(status)
    target = _number(status.target_density_per_um2)
    text = "laser ?" if power is None else f"laser {power:.3g} mW"
    if status.mode is not None:
        text += f", mode {status.mode}"
    if target is not None:
        text += f", target {target:.3g} µm⁻²"
    return text


def _loop_health(status: StatusReply) -> list[str]:
    """The density loop's trips, saturations and stale data, and its last event, if any."""
    names = (("safety_trips", "trips"), ("saturations", "saturations"), ("stale_episodes", "stale"))
    counts = [(label, status.counts.get(key, 0)) for key, label in names]
    shown = [f"{label} {n}" for label, n in counts if n > 0]
    lines = ["loop: " + ", ".join(shown) + (" (stale now)" if status.stale else "")]
    if status.last_event is not None:
        lines.append(f"last: {status.last_event}")
    return lines if shown else lines[1:]


class HealthPanel(QGroupBox):
    """Worker and viewer figures: frames/s, latency, queue, drops, errors, rates."""

    ROWS = ("stream", "worker", "dropped", "errors", "events", "received", "viewer")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Health", parent)
        form = QFormLayout(self)
        self.labels: dict[str, QLabel] = {}
        for name in self.ROWS:
            label = QLabel("–")
            label.setWordWrap(True)
            self.labels[name] = label
            form.addRow(name, label)

    def show_health(self, h: Health, gui_fps: float) -> None:
        fps = "–" if math.isnan(h.worker_fps) else f"{h.worker_fps:,.0f} frames/s"
        latency = "–" if math.isnan(h.latency_ms) else f"{h.latency_ms:.1f} ms"
        error = f"{h.errors} received" + (f" — {h.last_error}" if h.last_error else "")
        if h.receiver_errors:
            error += f" ({h.receiver_errors} in the viewer)"
        text = {
            "stream": h.stream,
            "worker": f"{fps} · latency {latency} · queue {h.queue_depth}",
            "dropped": f"source {h.dropped_source} frames · transport {h.missed_transport} msgs"
            f" · rejected {h.rejected}",
            "errors": error,
            "events": f"{h.events} received" + (f" — {h.last_event}" if h.last_event else ""),
            "received": f"{h.messages:,} msgs · {h.locs_received:,} locs · "
            f"{h.locs_per_s:,.0f} locs/s · {h.frames_per_s:,.0f} frames/s"
            + (f" · drawing {h.draw_backlog:,} behind" if h.draw_backlog else ""),
            "viewer": f"GUI {gui_fps:.0f} frames/s",
        }
        for name, value in text.items():
            self.labels[name].setText(value)

    def text(self) -> Mapping[str, str]:
        return {name: label.text() for name, label in self.labels.items()}
