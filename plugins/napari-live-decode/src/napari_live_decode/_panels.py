"""The dock widget's parts that are plain Qt: density/laser traces, controls, health line."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from live_decode.transport.control import StatusReply
    from live_decode.viewer import ControlLink, Health, Traces


class TracePlots(QWidget):
    """Density per frame (dots), smoothed (line) and the target band; laser power below."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.density = pg.PlotWidget()
        self.density.setLabel("left", "density", units="µm⁻²")
        self.density.setMinimumHeight(120)
        self.laser = pg.PlotWidget()
        self.laser.setLabel("left", "laser", units="mW")
        self.laser.setLabel("bottom", "frame")
        self.laser.setMinimumHeight(90)
        self.laser.setXLink(self.density)
        self._raw = self.density.plot([], [], pen=None, symbol="o", symbolSize=3)
        self._smooth = self.density.plot([], [], pen=pg.mkPen("#40c0ff", width=2))
        self._target = pg.InfiniteLine(angle=0, pen=pg.mkPen("#ffb040", style=Qt.PenStyle.DashLine))
        self._target.setVisible(False)
        self.density.addItem(self._target)
        self._power = self.laser.plot([], [], pen=pg.mkPen("#a060ff", width=2))
        layout.addWidget(self.density)
        layout.addWidget(self.laser)

    def show_traces(self, traces: Traces, target_per_um2: float | None) -> None:
        self._raw.setData(traces.frames, traces.density_per_um2)
        self._smooth.setData(traces.frames, traces.smoothed)
        self._power.setData(traces.laser_frames, traces.laser_mw)
        if target_per_um2 is not None and math.isfinite(target_per_um2):
            self._target.setValue(target_per_um2)
            self._target.setVisible(True)
        else:
            self._target.setVisible(False)

    def point_count(self) -> int:
        """Frames plotted on the density trace."""
        x, _ = self._raw.getData()
        return 0 if x is None else int(np.size(x))


class ControlPanel(QGroupBox):
    """Target density, feedback on/off and manual laser power, sent through a ControlLink."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("density control", parent)
        self._link: ControlLink | None = None
        self._synced = False
        form = QFormLayout(self)
        self.target = QDoubleSpinBox(decimals=3, minimum=0.0, maximum=100.0, singleStep=0.1)
        self.target.setSuffix(" µm⁻²")
        self.set_target = QPushButton("set")
        form.addRow("target", _row(self.target, self.set_target))
        self.feedback = QCheckBox("feedback (PI loop drives the 405 nm laser)")
        form.addRow(self.feedback)
        self.laser = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1000.0, singleStep=0.5)
        self.laser.setSuffix(" mW")
        self.set_laser = QPushButton("set")
        form.addRow("laser", _row(self.laser, self.set_laser))
        self.reply = QLabel("not connected")
        self.reply.setWordWrap(True)
        form.addRow(self.reply)
        self.set_target.clicked.connect(self._send_target)
        self.set_laser.clicked.connect(self._send_laser)
        self.feedback.toggled.connect(self._send_feedback)
        self.attach(None)

    def attach(self, link: ControlLink | None, note: str = "") -> None:
        """Send to ``link`` from now on (None: disabled, ``note`` says why)."""
        self._link, self._synced = link, False
        for w in (self.target, self.set_target, self.feedback, self.laser, self.set_laser):
            w.setEnabled(link is not None)
        self.reply.setText(note or ("waiting for the source's status" if link else "no control"))

    def refresh(self) -> None:
        """Show the last reply; take the source's target/mode/limits from its first status."""
        link = self._link
        if link is None:
            return
        status = link.status
        if status is not None and not self._synced:
            self._sync(status)
        reply = link.last_reply
        if reply is not None:
            self.reply.setText(reply.describe())
        elif status is not None:
            self.reply.setText(f"source: mode {status.mode or 'none'}, laser {status.laser_mw} mW")

    @property
    def target_per_um2(self) -> float | None:
        status = self._link.status if self._link is not None else None
        return status.target_density_per_um2 if status is not None else None

    def _sync(self, status: StatusReply) -> None:
        self._synced = True
        widgets = (self.target, self.feedback, self.laser)
        for w in widgets:
            w.blockSignals(True)
        if status.limits_mw is not None:
            self.laser.setRange(*status.limits_mw)
        if status.laser_mw is not None and status.laser_mw == status.laser_mw:
            self.laser.setValue(status.laser_mw)
        if status.target_density_per_um2 is not None:
            self.target.setValue(status.target_density_per_um2)
        self.feedback.setChecked(status.mode == "auto")
        self.feedback.setEnabled(status.mode is not None)  # no density loop: nothing to toggle
        for w in widgets:
            w.blockSignals(False)

    def _send_target(self) -> None:
        if self._link is not None:
            self._link.set_target(self.target.value())

    def _send_laser(self) -> None:
        if self._link is not None:
            self._link.set_laser(self.laser.value())

    def _send_feedback(self, on: bool) -> None:
        if self._link is not None:
            self._link.set_feedback(on)


def health_text(health: Health, *, kept: int, mismatch: str) -> str:
    """One or two lines: stream state, worker speed, drops, errors, the mismatch alarm."""

    def num(value: float, fmt: str) -> str:
        return format(value, fmt) if math.isfinite(value) else "–"

    lines = [
        f"{health.stream} · worker {num(health.worker_fps, '.0f')} fps · latency "
        f"{num(health.latency_ms, '.0f')} ms · queue {health.queue_depth} · "
        f"{health.locs_received:,} localizations ({kept:,} drawn)",
        f"dropped {health.dropped_source} · missed {health.missed_transport} · rejected "
        f"{health.rejected} · errors {health.errors}"
        + (f": {health.last_error}" if health.last_error else ""),
    ]
    if mismatch:
        lines.append(f"⚠ {mismatch}")
    return "\n".join(lines)


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box
