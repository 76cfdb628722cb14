"""The widgets beside the plots: render controls, acquisition controls, health figures."""

from __future__ import annotations

import math
from collections.abc import Mapping

from qtpy.QtCore import Signal  # type: ignore[attr-defined]  # qtpy re-exports it
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QWidget,
)

from live_decode.viewer.accumulator import RenderSettings
from live_decode.viewer.control_link import ControlLink, laser_power_of
from live_decode.viewer.density import Health


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
    """Pixel size, Gaussian rendering, prob/σ filters, contrast percentile, reset, export."""

    settings_changed = Signal()

    def __init__(self, settings: RenderSettings, parent: QWidget | None = None) -> None:
        super().__init__("Super-resolution", parent)
        self.pixel_size = _spin(1.0, 200.0, settings.pixel_size_nm, 1.0, 1, " nm")
        self.pixel_size.setToolTip("render pixel size")
        self.gaussian = QCheckBox("Gaussian σ")
        self.gaussian.setChecked(settings.gaussian)
        self.gaussian.setToolTip("draw each localization with its predicted uncertainty")
        self.min_prob = _spin(0.0, 1.0, settings.min_prob, 0.05, 2)
        self.min_prob.setToolTip("draw only localizations with detection probability ≥ this")
        sigma = settings.max_sigma_nm if math.isfinite(settings.max_sigma_nm) else 0.0
        self.max_sigma = _spin(0.0, 1000.0, sigma, 5.0, 0, " nm")
        self.max_sigma.setSpecialValueText("off")  # 0 shows as "off": no σ limit
        self.max_sigma.setToolTip("draw only localizations with σ ≤ this (0 = off)")
        self.percentile = _spin(50.0, 100.0, 99.5, 0.1, 1, " %")
        self.percentile.setToolTip("white level: this percentile of the non-zero pixels")
        self.reset = QPushButton("Reset")
        self.fit = QPushButton("Fit view")
        self.export_png = QPushButton("Export PNG…")
        self.export_tiff = QPushButton("Export TIFF…")
        form = QFormLayout(self)
        form.addRow("pixel", self.pixel_size)
        form.addRow(self.gaussian)
        form.addRow("prob ≥", self.min_prob)
        form.addRow("σ ≤", self.max_sigma)
        form.addRow("white", self.percentile)
        for pair in ((self.reset, self.fit), (self.export_png, self.export_tiff)):
            row = QHBoxLayout()
            for button in pair:
                row.addWidget(button)
            form.addRow(row)
        for box in (self.pixel_size, self.min_prob, self.max_sigma):
            box.valueChanged.connect(self.settings_changed)
        self.gaussian.toggled.connect(self.settings_changed)

    def render_settings(self, base: RenderSettings) -> RenderSettings:
        """``base`` with the values shown in the widgets."""
        sigma = self.max_sigma.value()
        return RenderSettings(
            pixel_size_nm=self.pixel_size.value(),
            gaussian=self.gaussian.isChecked(),
            min_prob=self.min_prob.value(),
            max_sigma_nm=sigma if sigma > 0 else math.inf,
            max_kernel_radius_px=base.max_kernel_radius_px,
        )


class ControlsPanel(QGroupBox):
    """Target density, feedback on/off and manual laser power, sent through a ControlLink."""

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
        self.laser = _spin(0.0, max_laser_mw, laser_mw, 0.5, 1, " mW")
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
        if link is None:
            for w in (self.target, self.set_target, self.feedback, self.laser, self.set_laser):
                w.setEnabled(False)
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
        """Show the latest command's reply and the source's status."""
        if self.link is None:
            return
        parts = []
        last = self.link.last_reply
        if last is not None:
            parts.append(last.describe())
        status = self.link.status
        if status:
            power = laser_power_of(status)
            mode = status.get("mode")
            parts.append(
                "source: "
                + ("laser ? " if power is None else f"laser {power:g} mW")
                + (f", mode {mode}" if isinstance(mode, str) else "")
            )
        else:
            parts.append(f"source: no status from {self.link.endpoint} yet")
        self.reply.setText("\n".join(parts))

    def current_target(self) -> float:
        """The target the controller reports, else the one last sent or set at start."""
        reported = self.link.status.get("target_density_per_um2") if self.link else None
        if isinstance(reported, int | float) and not isinstance(reported, bool):
            return float(reported)
        return self.sent_target


class HealthPanel(QGroupBox):
    """Worker and viewer figures: frames/s, latency, queue, drops, errors, rates."""

    ROWS = ("stream", "worker", "dropped", "errors", "received", "viewer")

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
            "received": f"{h.messages:,} msgs · {h.locs_received:,} locs · "
            f"{h.locs_per_s:,.0f} locs/s · {h.frames_per_s:,.0f} frames/s"
            + (f" · drawing {h.draw_backlog:,} behind" if h.draw_backlog else ""),
            "viewer": f"GUI {gui_fps:.0f} frames/s",
        }
        for name, value in text.items():
            self.labels[name].setText(value)

    def text(self) -> Mapping[str, str]:
        return {name: label.text() for name, label in self.labels.items()}
