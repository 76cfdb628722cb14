"""The Quality plots: NeNA precision and FRC resolution over frames, and the drift trace."""

from __future__ import annotations

import math

import pyqtgraph as pg
from qtpy.QtWidgets import QWidget

from live_decode.viewer.quality_view import QualityTraces


class QualityPlot(pg.GraphicsLayoutWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """Left: NeNA and FRC (nm) at each quality update; right: drift x, y (nm) per frame."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.precision = self.addPlot(title="quality: waiting for localizations")
        self.precision.setLabel("bottom", "frame")
        self.precision.setLabel("left", "nm")
        self.precision.showGrid(x=True, y=True, alpha=0.2)
        self.precision.addLegend(offset=(10, 5))
        self.nena = self.precision.plot(
            pen=pg.mkPen(60, 110, 255, width=2), symbol="o", symbolSize=6, name="NeNA precision"
        )
        self.frc = self.precision.plot(
            pen=pg.mkPen(220, 60, 160, width=2), symbol="s", symbolSize=6, name="FRC resolution"
        )
        self.drift = self.addPlot(title="drift (RCC)")
        self.drift.setLabel("bottom", "frame")
        self.drift.setLabel("left", "drift", units="nm")
        # "nm" is not an SI base unit: pyqtgraph's prefixes made ±0.4 nm read "±400 mnm".
        self.drift.getAxis("left").enableAutoSIPrefix(False)
        self.drift.showGrid(x=True, y=True, alpha=0.2)
        self.drift.addLegend(offset=(10, 5))
        self.dx = self.drift.plot(pen=pg.mkPen(60, 170, 90, width=2), name="x")
        self.dy = self.drift.plot(pen=pg.mkPen(255, 156, 58, width=2), name="y")
        for curve in (self.dx, self.dy):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        self.shown: QualityTraces | None = None

    def show_quality(self, q: QualityTraces) -> None:
        """Draw the traces (only when they are a new snapshot)."""
        if q is self.shown:
            return
        self.shown = q
        self.nena.setData(q.frames, q.nena_nm, connect="finite")
        self.frc.setData(q.frames, q.frc_nm, connect="finite")
        self.dx.setData(q.drift_frames, q.drift_dx_nm)
        self.dy.setData(q.drift_frames, q.drift_dy_nm)
        self.precision.setTitle(title_of(q))


def title_of(q: QualityTraces) -> str:
    """``NeNA 12.1 nm · FRC 38.0 nm at frame 1000`` (— where not computable yet)."""
    if not q.frames.size:
        return "quality: no update yet"

    def nm(value: float) -> str:
        return f"{value:.1f} nm" if math.isfinite(value) else "—"

    return f"NeNA {nm(q.latest_nena_nm)} · FRC {nm(q.latest_frc_nm)} at frame {q.frames[-1]:.0f}"
