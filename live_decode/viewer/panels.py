"""The three plotting panels: raw frame with detections, super-resolution image, density trace.

Display only: each panel is handed snapshots by the window's timers and never touches sockets.
Images are row-major (row 0 at the top, y down, x = column), as DESIGN.md §4.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt
import pyqtgraph as pg
from qtpy.QtCore import QRectF
from qtpy.QtWidgets import QWidget

from live_decode.viewer.render import colour_by_value, percentile_levels
from live_decode.viewer.snapshots import (
    Detections,
    NetworkImage,
    PreviewFrame,
    RenderSnapshot,
    Traces,
)

RAW_PERCENTILES: Final = (0.5, 99.8)
"""Raw-frame auto-contrast: levels at these percentiles of the frame."""


def _lut(name: str) -> npt.NDArray[np.uint8]:
    # 256 uint8 entries keep pyqtgraph on its fast path (research/pymmcore.md §5).
    lut: npt.NDArray[np.uint8] = pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)
    return lut


class RawFramePanel(pg.GraphicsLayoutWidget):  # type: ignore[misc]  # pyqtgraph is untyped
    """The latest camera frame at fixed levels, with that frame's detections as circles."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = self.addPlot(title="raw frame")
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideButtons()
        # No axes: at 25 Hz, repainting them cost more GUI time than the image (profiled).
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(_lut("CET-L1"))
        self.plot.addItem(self.image)
        self.markers = pg.ScatterPlotItem(
            size=11, pen=pg.mkPen(0, 220, 255, width=1.5), brush=None, pxMode=True
        )
        self.plot.addItem(self.markers)
        self.levels: tuple[float, float] | None = None
        self._flat_levels = True  # levels from a blank frame are re-fitted on the next frame
        self.frame: PreviewFrame | None = None
        self.marker_frame: int | None = None
        self.markers_shown = 0

    def show_frame(self, frame: PreviewFrame) -> None:
        """Draw ``frame`` at the fixed levels (set from the first frame, or by auto-contrast)."""
        first = self.frame is None or self.frame.pixels.shape != frame.pixels.shape
        self.frame = frame
        if self._flat_levels:
            self.auto_contrast()
        self.image.setImage(frame.pixels, autoLevels=False, levels=self.levels)
        self.plot.setTitle(f"raw frame {frame.index}")
        if first:
            h, w = frame.pixels.shape
            self.plot.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def auto_contrast(self) -> None:
        """Set the levels from the current frame's percentiles (then keep them fixed)."""
        if self.frame is None:
            return
        lo, hi = np.percentile(self.frame.pixels, RAW_PERCENTILES)
        self._flat_levels = bool(hi <= lo)
        self.levels = (float(lo), float(max(hi, lo + 1)))
        self.image.setLevels(self.levels)

    def show_detections(
        self, detections: Detections | None, *, min_prob: float, max_sigma_nm: float
    ) -> None:
        """Circle the localizations of the shown frame that pass the render filters."""
        if detections is None or self.frame is None:
            self.markers.setData([], [])
            self.marker_frame, self.markers_shown = None, 0
            return
        keep = detections.prob >= min_prob
        if math.isfinite(max_sigma_nm):
            keep &= detections.sigma_nm <= max_sigma_nm
        px = self.frame.pixel_size_nm
        # Pixel j spans x in [j, j+1) on the image item, so nm / pixel size is the position.
        x, y = detections.x_nm[keep] / px, detections.y_nm[keep] / px
        self.markers.setData(x, y)
        self.marker_frame, self.markers_shown = detections.frame, int(x.size)


class SuperResPanel(pg.GraphicsLayoutWidget):  # type: ignore[misc]
    """The accumulated super-resolution image, in µm, with zoom, pan and a scale bar.

    A scale bar instead of axes: repainting axis labels with every new image cost more GUI
    time than the image itself (profiled with the viewer benchmark).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = self.addLabel("super-resolution", row=0, col=0, size="11pt")
        self.vb = self.addViewBox(row=1, col=0, lockAspect=True, invertY=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self._density_lut = _lut("inferno")
        self._value_lut = _lut("turbo")
        self.image.setLookupTable(self._density_lut)
        self.vb.addItem(self.image)
        self.scale_bar = pg.ScaleBar(size=1.0, width=4, suffix="m", offset=(-25, -25))
        self.scale_bar.setParentItem(self.vb)
        self.vb.sigRangeChanged.connect(self._resize_scale_bar)
        self.levels: tuple[float, float] = (0.0, 1.0)
        self.extent_um: tuple[float, float] | None = None  # (height, width) last fitted
        self.shown_version = -1

    def _resize_scale_bar(self) -> None:
        """About a fifth of the visible width, rounded to 1, 2 or 5 × 10ⁿ µm."""
        (x0, x1), _ = self.vb.viewRange()
        target = max((x1 - x0) / 5, 1e-6)
        decade = 10 ** math.floor(math.log10(target))
        size_um = max(m * decade for m in (1, 2, 5) if m * decade <= target * 1.0001)
        self.scale_bar.size = size_um
        label = f"{size_um * 1000:g} nm" if size_um < 1 else f"{size_um:g} µm"
        self.scale_bar.text.setText(label)
        self.scale_bar.updateBar()

    def visible_region_px(
        self, pixel_size_nm: float
    ) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """(rows, cols) of render pixels in view, or None before the first image."""
        if self.extent_um is None:
            return None
        (x0, x1), (y0, y1) = self.vb.viewRange()
        scale = 1000.0 / pixel_size_nm
        return (y0 * scale, y1 * scale), (x0 * scale, x1 * scale)

    def screen_side(self) -> int:
        """The larger side of the view in device pixels: the useful image resolution."""
        rect = self.vb.boundingRect()
        ratio = float(self.devicePixelRatioF())
        return max(256, int(max(rect.width(), rect.height()) * ratio))

    def show_render(
        self, snap: RenderSnapshot, percentile: float, full_extent_um: tuple[float, float]
    ) -> None:
        """Draw a render snapshot with levels (0, percentile of its non-zero pixels).

        With a z/time colour, each pixel's hue is its mean z or frame (turbo colour table, over
        the range of all localizations, shown in the title) and its brightness the count.
        """
        v = snap.view
        self.levels = percentile_levels(v.image, percentile)
        colour = snap.settings.colour
        if v.values is None or colour == "density":
            self.image.setLookupTable(self._density_lut)
            self.image.setImage(v.image, autoLevels=False, levels=self.levels)
            self.title.setText("super-resolution")
        else:
            rgb = colour_by_value(v.image, v.values, v.value_range, self.levels[1], self._value_lut)
            self.image.setLookupTable(None)
            self.image.setImage(rgb, autoLevels=False, levels=(0, 255))
            self.title.setText(f"super-resolution · colour: {_value_legend(colour, v.value_range)}")
        um = snap.settings.pixel_size_nm / 1000.0
        self.image.setRect(QRectF(v.x0_px * um, v.y0_px * um, v.width_px * um, v.height_px * um))
        self.shown_version = snap.version
        if self.extent_um != full_extent_um:  # first image, or the canvas grew: show it all
            self.extent_um = full_extent_um
            self.fit()

    def show_network_image(
        self, image: NetworkImage, percentile: float, full_extent_um: tuple[float, float]
    ) -> None:
        """Draw the network's own image (Deep-STORM's summed density) over the camera's field.

        Levels as for a render: (0, percentile of the non-zero pixels).
        """
        self.levels = percentile_levels(image.pixels, percentile)
        self.image.setLookupTable(self._density_lut)
        self.image.setImage(image.pixels, autoLevels=False, levels=self.levels)
        rows, cols = image.pixels.shape
        um = image.pixel_size_nm / 1000.0
        self.image.setRect(QRectF(0.0, 0.0, cols * um, rows * um))
        self.title.setText(
            f"super-resolution · network image, {image.frames} frames, "
            f"{image.pixel_size_nm:.1f} nm px"
        )
        self.shown_version = image.version
        if self.extent_um != full_extent_um:
            self.extent_um = full_extent_um
            self.fit()

    def fit(self) -> None:
        """Zoom to the whole canvas."""
        if self.extent_um is not None:
            h, w = self.extent_um
            self.vb.setRange(xRange=(0, w), yRange=(0, h), padding=0.02)


def _value_legend(colour: str, span: tuple[float, float] | None) -> str:
    """``z −350 … 420 nm`` or ``frame 0 … 900`` (blue … red)."""
    if span is None:
        return colour
    low, high = span
    if colour == "z":
        return f"z {low:.0f} … {high:.0f} nm (blue … red)"
    return f"frame {low:.0f} … {high:.0f} (blue … red)"


class DensityPlot(pg.PlotWidget):  # type: ignore[misc]
    """Density per frame (raw and smoothed) with the target band; laser power on a right axis."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        plot = self.getPlotItem()
        self.plot = plot
        plot.setLabel("bottom", "frame")
        plot.setLabel("left", "density", units="µm⁻²")
        plot.getAxis("left").enableAutoSIPrefix(False)  # no "mµm⁻²" at low densities
        plot.showGrid(x=True, y=True, alpha=0.2)
        plot.addLegend(offset=(10, 5), colCount=3)
        self.band = pg.LinearRegionItem(
            values=(0.0, 0.0),
            orientation="horizontal",
            movable=False,
            brush=pg.mkBrush(80, 200, 120, 50),
            pen=pg.mkPen(80, 200, 120, 120),
        )
        plot.addItem(self.band)
        self.raw = plot.plot(pen=pg.mkPen(120, 150, 255, 110), name="per frame")
        self.smooth = plot.plot(pen=pg.mkPen(60, 110, 255, width=2.5), name="smoothed")
        for curve in (self.raw, self.smooth):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
            curve.setSkipFiniteCheck(True)
        # Laser power: a second view box sharing the frame axis, drawn against the right axis.
        self.laser_box = pg.ViewBox()
        plot.showAxis("right")
        plot.scene().addItem(self.laser_box)
        plot.getAxis("right").linkToView(self.laser_box)
        plot.getAxis("right").setLabel("405 nm laser", units="mW", color="#ff9c3a")
        self.laser_box.setXLink(plot)
        self.laser = pg.PlotDataItem(pen=pg.mkPen(255, 156, 58, width=2), stepMode=None)
        self.laser_box.addItem(self.laser)
        plot.legend.addItem(self.laser, "laser")
        plot.vb.sigResized.connect(self._sync_laser_box)
        self.target: tuple[float, float] | None = None

    def _sync_laser_box(self) -> None:
        self.laser_box.setGeometry(self.plot.vb.sceneBoundingRect())
        self.laser_box.linkedViewChanged(self.plot.vb, self.laser_box.XAxis)

    def show_traces(self, traces: Traces) -> None:
        self.raw.setData(traces.frames, traces.density_per_um2)
        self.smooth.setData(traces.frames, traces.smoothed)
        self.laser.setData(traces.laser_frames, traces.laser_mw)

    def show_target(self, target_per_um2: float, band_fraction: float) -> None:
        """Shade ``target × (1 ± band_fraction)``."""
        band = (target_per_um2 * (1 - band_fraction), target_per_um2 * (1 + band_fraction))
        if band != self.target:
            self.band.setRegion(band)
            self.target = band

    def show_rate(self, locs_per_s: float, density: float | None) -> None:
        latest = "" if density is None else f"   latest {density:.3g} µm⁻²"
        self.plot.setTitle(f"density{latest}   ·   {locs_per_s:,.0f} localizations/s")
