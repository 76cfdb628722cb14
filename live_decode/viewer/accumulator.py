"""Super-resolution image grown from localizations as they arrive (no Qt).

The canvas covers ``[0, width_nm) × [0, height_nm)`` of the camera's field of view at
``pixel_size_nm`` per render pixel: render pixel (row i, col j) holds the localizations with
``i = floor(y_nm / pixel_size_nm)`` and ``j = floor(x_nm / pixel_size_nm)`` (DESIGN.md §4: x is the
column). Two renderings:

- **histogram**: each localization adds 1 to its pixel (values are counts);
- **gaussian**: each localization adds a Gaussian of its own predicted ``sigma_x_nm`` /
  ``sigma_y_nm``, integrated over each pixel (no pixel-centre bias) and normalized to 1, so the
  image still sums to the number of localizations drawn. Kernels are truncated at
  ``render.KERNEL_SIGMAS`` σ and at ``RenderSettings.max_kernel_radius_px``.

The raw localizations (x, y, σx, σy, prob, z, frame) are kept in a growable buffer so that
changing a filter, the pixel size, the rendering or the colour re-renders everything kept. The
buffer stops growing at ``capacity`` localizations (28 bytes each): later ones are still drawn
but not kept (``not_kept`` counts them), so a re-render then shows only the first ``capacity``.

Not thread-safe: one thread writes; readers take a lock owned by the caller (the receiver),
which uses the ``deferred`` mode: :meth:`SuperResAccumulator.add` only keeps, and
:meth:`SuperResAccumulator.catch_up` draws in slices between receives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from live_decode.messages import Localizations
from live_decode.quality.drift import DriftTrace
from live_decode.viewer.render import Image, bin_sum, splat_counts, splat_gaussians

COARSE_FACTOR: Final = 4
"""Besides the render, a copy summed in 4 × 4 blocks is kept up to date: zoomed-out views bin
that (16× fewer pixels) instead of the full render."""

_COLUMNS: Final = ("x_nm", "y_nm", "sigma_x_nm", "sigma_y_nm", "prob", "z_nm", "frame")
_X, _Y, _SX, _SY, _PROB, _Z, _T = range(7)

Colour = Literal["density", "z", "time"]
COLOURS: Final[tuple[Colour, ...]] = ("density", "z", "time")
_COLOUR_COLUMN: Final = {"z": _Z, "time": _T}
_INITIAL_ROWS: Final = 1 << 16
_CHUNK_ROWS: Final = 1 << 18  # re-render in chunks: bounded temporary memory


@dataclass(frozen=True)
class RenderSettings:
    """How localizations become the super-resolution image.

    Parameters
    ----------
    pixel_size_nm
        Render pixel size (10–20 nm is typical).
    gaussian
        Draw each localization as a Gaussian of its predicted σ instead of a histogram count.
    min_prob
        Localizations with a detection probability below this are not drawn.
    max_sigma_nm
        Localizations whose larger lateral σ exceeds this are not drawn.
    max_kernel_radius_px
        Largest Gaussian kernel radius, in render pixels (bounds the cost per localization).
    colour
        ``density``: one colour scale for the localization count. ``z`` (3-D) or ``time``
        (frame): each pixel's hue is the mean z or frame of what it holds, its brightness the
        count (:attr:`ImageView.values`).
    drift_corrected
        Draw each localization shifted by minus the drift estimate at its frame
        (:meth:`SuperResAccumulator.set_drift`); the kept coordinates stay raw.
    """

    pixel_size_nm: float = 10.0
    gaussian: bool = False
    min_prob: float = 0.0
    max_sigma_nm: float = math.inf
    max_kernel_radius_px: int = 8
    colour: Colour = "density"
    drift_corrected: bool = False

    def __post_init__(self) -> None:
        if not self.pixel_size_nm > 0:
            raise ValueError(f"pixel_size_nm must be > 0, got {self.pixel_size_nm}")
        if self.max_kernel_radius_px < 1:
            raise ValueError(f"max_kernel_radius_px must be >= 1, got {self.max_kernel_radius_px}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {COLOURS}, got {self.colour!r}")


@dataclass(frozen=True)
class ImageView:
    """A region of the render, binned ``bin_factor``× to fit the screen.

    ``image`` is (rows, cols) float32, row 0 at ``y0_px``; the rect is in render pixels. With a
    ``z``/``time`` colour, ``values`` is the same shape: each pixel's mean z (nm) or frame, NaN
    where it is empty, and ``value_range`` the (low, high) of all localizations drawn.
    """

    image: Image
    x0_px: int
    y0_px: int
    width_px: int
    height_px: int
    bin_factor: int
    values: Image | None = None
    value_range: tuple[float, float] | None = None


class SuperResAccumulator:
    """Accumulates localizations into a super-resolution image (module docstring).

    Parameters
    ----------
    settings
        Pixel size, rendering and filters.
    fov_nm
        (height, width) of the field of view in nm, if known; the canvas also grows to hold
        localizations beyond it.
    capacity
        Localizations kept for re-rendering (28 bytes each: x, y, σx, σy, prob, z, frame).
    max_pixels
        Largest canvas (render pixels); localizations beyond it count as ``outside``.
    deferred
        Keep localizations in :meth:`add` but draw them only in :meth:`catch_up`, so a receiver
        can keep receiving while drawing lags (the Gaussian rendering costs far more than
        receiving), in bounded slices.
    """

    def __init__(
        self,
        settings: RenderSettings | None = None,
        *,
        fov_nm: tuple[float, float] | None = None,
        capacity: int = 20_000_000,
        max_pixels: int = 64 << 20,
        deferred: bool = False,
    ) -> None:
        self._settings = settings or RenderSettings()
        self.deferred = deferred
        self._done = 0  # kept rows drawn into the current image
        self.capacity = capacity
        self.max_pixels = max_pixels
        self._fov_nm = fov_nm or (0.0, 0.0)
        self._extent_nm = self._fov_nm  # (height, width) covered by data or the field of view
        self._buffer = np.empty((len(_COLUMNS), 0), np.float32)
        self._kept = 0
        self.not_kept = 0
        self.version = 0  # increases with every change of the image
        self._drift: DriftTrace | None = None
        self._alloc(self._shape_for(self._extent_nm))

    # ------------------------------------------------------------------ state
    @property
    def settings(self) -> RenderSettings:
        return self._settings

    @property
    def image(self) -> Image:
        """The render, (rows, cols) float32: a view, valid until the next change."""
        p = self._pad
        return self._canvas[p : p + self._shape[0], p : p + self._shape[1]]

    @property
    def value_image(self) -> Image:
        """Per pixel, the sum of the colour quantity (z nm or frame) over what it holds (a view;
        only with a ``z``/``time`` colour): divided by :attr:`image`, the pixel's mean."""
        p = self._pad
        canvas = self._value_canvas
        if canvas is None:
            raise ValueError("value_image needs a z or time colour (RenderSettings.colour)")
        return canvas[p : p + self._shape[0], p : p + self._shape[1]]

    @property
    def coarse(self) -> Image:
        """The render summed in ``COARSE_FACTOR``² blocks (ragged at the bottom/right edge)."""
        return self._coarse

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the render."""
        return self._shape

    @property
    def kept(self) -> int:
        """Localizations kept for re-rendering."""
        return self._kept

    @property
    def drawn(self) -> int:
        """Localizations drawn in the current image (after filters, inside the canvas)."""
        return self._drawn

    @property
    def outside(self) -> int:
        """Localizations not drawn because they fall outside the canvas (negative or too far)."""
        return self._outside

    # ------------------------------------------------------------------ changes
    def set_field_of_view(self, height_nm: float, width_nm: float) -> None:
        """Make the canvas cover at least ``height_nm × width_nm`` (it never shrinks)."""
        self._fov_nm = (height_nm, width_nm)
        self._grow_to(height_nm, width_nm, exact=True)

    @property
    def pending(self) -> int:
        """Kept localizations not drawn yet (``deferred`` mode), to be drawn by :meth:`catch_up`."""
        return self._kept - self._done

    def add(self, locs: Localizations) -> int:
        """Keep a batch of :data:`~live_decode.messages.LOC_DTYPE` rows; draw it unless deferred.

        Rows that do not fit in the buffer any more are drawn at once (later they could not be).

        Returns
        -------
        int
            How many were drawn by this call (passed the filters and fell inside the canvas).
        """
        if len(locs) == 0:
            return 0
        cols = np.stack([np.asarray(locs[c], np.float32) for c in _COLUMNS])
        finite = np.isfinite(cols[_X]) & np.isfinite(cols[_Y])
        if finite.any():
            self._grow_to(float(cols[_Y][finite].max()), float(cols[_X][finite].max()))
        n_kept = self._keep(cols)
        drawn = self._draw(cols[:, n_kept:]) if n_kept < cols.shape[1] else 0
        if drawn:
            self.version += 1
        return drawn + (0 if self.deferred else self.catch_up())

    def catch_up(self, max_rows: int | None = None) -> int:
        """Draw kept rows not drawn yet, at most ``max_rows``; returns how many were drawn."""
        end = self._kept if max_rows is None else min(self._kept, self._done + max_rows)
        drawn = 0
        for start in range(self._done, end, _CHUNK_ROWS):
            drawn += self._draw(self._buffer[:, start : min(start + _CHUNK_ROWS, end)])
        if end > self._done:
            self.version += 1
        self._done = end
        return drawn

    def update(self, settings: RenderSettings) -> None:
        """Change the settings: clear the image and re-render the kept localizations (at once,
        or by :meth:`catch_up` in deferred mode).

        Raises
        ------
        ValueError
            If the pixel size is too small for the field of view (over ``max_pixels``).
        """
        extent_shape = self._shape_for(self._extent_nm, settings.pixel_size_nm)
        if extent_shape[0] * extent_shape[1] > self.max_pixels:
            raise ValueError(
                f"a {settings.pixel_size_nm:g} nm render of this field of view needs "
                f"{extent_shape[0]} × {extent_shape[1]} pixels, more than {self.max_pixels}: "
                "choose a larger pixel size"
            )
        self._settings = settings
        self._alloc(extent_shape)
        self._done = 0
        self.version += 1
        if not self.deferred:
            self.catch_up()

    def set_drift(self, trace: DriftTrace | None) -> None:
        """Use a new drift estimate; with ``drift_corrected`` on, everything kept is re-rendered."""
        self._drift = trace
        if self._settings.drift_corrected:
            self.update(self._settings)

    def set_filters(self, *, min_prob: float, max_sigma_nm: float) -> None:
        """Change the prob/σ filters and re-render."""
        self.update(replace(self._settings, min_prob=min_prob, max_sigma_nm=max_sigma_nm))

    def reset(self) -> None:
        """Forget every localization; the canvas returns to the field of view."""
        self._buffer = np.empty((len(_COLUMNS), 0), np.float32)
        self._kept = self._done = 0
        self.not_kept = 0
        self._extent_nm = self._fov_nm
        self._alloc(self._shape_for(self._extent_nm))
        self.version += 1

    # ------------------------------------------------------------------ reading
    def view(
        self,
        rows: tuple[float, float] | None = None,
        cols: tuple[float, float] | None = None,
        max_side: int = 2048,
    ) -> ImageView:
        """A copy of a region (render pixels, clipped to the canvas), sum-binned to ≤ ``max_side``.

        The binning grid is anchored at pixel 0 so it does not shimmer while panning.
        """
        h, w = self._shape
        r0, r1 = _clip_range(rows, h)
        c0, c1 = _clip_range(cols, w)
        f = max(1, math.ceil(max(r1 - r0, c1 - c0) / max(1, max_side)))
        c = COARSE_FACTOR
        if f >= c:
            f = -(-f // c) * c  # a multiple of the coarse blocks: bin those, not the render
        r0, c0 = (r0 // f) * f, (c0 // f) * f
        r1, c1 = min(h, -(-r1 // f) * f), min(w, -(-c1 // f) * f)
        if f >= c:
            window = (slice(r0 // c, -(-r1 // c)), slice(c0 // c, -(-c1 // c)))
            crop, g = self._coarse[window], f // c
            value_crop = None if self._value_coarse is None else self._value_coarse[window]
        else:
            crop, g = self.image[r0:r1, c0:c1], f
            value_crop = None if self._value_canvas is None else self.value_image[r0:r1, c0:c1]
        binned = bin_sum(crop, g) if g > 1 else np.array(crop, np.float32)
        rows_px, cols_px = binned.shape[0] * f, binned.shape[1] * f
        if value_crop is None:
            return ImageView(binned, c0, r0, cols_px, rows_px, f)
        sums = bin_sum(value_crop, g) if g > 1 else value_crop
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(binned > 0, sums / binned, np.nan).astype(np.float32)
        return ImageView(binned, c0, r0, cols_px, rows_px, f, means, self._value_range)

    # ------------------------------------------------------------------ internals
    def _shape_for(
        self, extent_nm: tuple[float, float], pixel_size_nm: float | None = None
    ) -> tuple[int, int]:
        px = pixel_size_nm or self._settings.pixel_size_nm
        return (max(1, math.ceil(extent_nm[0] / px)), max(1, math.ceil(extent_nm[1] / px)))

    def _alloc(self, shape: tuple[int, int]) -> None:
        self._pad = self._settings.max_kernel_radius_px if self._settings.gaussian else 0
        self._shape = shape
        self._canvas = np.zeros((shape[0] + 2 * self._pad, shape[1] + 2 * self._pad), np.float32)
        c = COARSE_FACTOR
        self._coarse = np.zeros((-(-shape[0] // c), -(-shape[1] // c)), np.float32)
        coloured = self._settings.colour != "density"
        self._value_canvas = np.zeros_like(self._canvas) if coloured else None
        self._value_coarse = np.zeros_like(self._coarse) if coloured else None
        self._value_range: tuple[float, float] | None = None  # of the values drawn
        self._drawn = 0
        self._outside = 0

    def _grow_to(self, height_nm: float, width_nm: float, *, exact: bool = False) -> None:
        """Enlarge the canvas (copying the render) to cover ``height_nm × width_nm``.

        For data (``exact=False``) it grows by at least 25 % so a slowly spreading stream
        reallocates rarely. It never grows beyond ``max_pixels``: what lies further is outside.
        """
        eh, ew = self._extent_nm
        px = self._settings.pixel_size_nm
        if exact:
            nh, nw = max(eh, height_nm), max(ew, width_nm)
        else:
            nh = eh if height_nm < eh else max(height_nm + px, eh * 1.25)
            nw = ew if width_nm < ew else max(width_nm + px, ew * 1.25)
        if (nh, nw) == (eh, ew):
            return
        shape = self._shape_for((nh, nw))
        if shape[0] * shape[1] > self.max_pixels:
            return
        self._extent_nm = (nh, nw)
        if shape == self._shape:
            return
        old, old_values, (oh, ow), p = self._canvas, self._value_canvas, self._shape, self._pad
        drawn, outside, value_range = self._drawn, self._outside, self._value_range
        self._alloc(shape)
        # Same origin; the old margin keeps Gaussian tails that now fall inside the image.
        self._canvas[: oh + 2 * p, : ow + 2 * p] = old
        # Only the old area (and its margin, now inside) holds data: bin just that, not the
        # whole new canvas (a 5120² bin costs half a second on a busy machine).
        binned = bin_sum(self.image[: oh + p, : ow + p], COARSE_FACTOR)
        self._coarse[: binned.shape[0], : binned.shape[1]] = binned
        values, values_coarse = self._value_canvas, self._value_coarse
        if old_values is not None and values is not None and values_coarse is not None:
            values[: oh + 2 * p, : ow + 2 * p] = old_values
            binned = bin_sum(self.value_image[: oh + p, : ow + p], COARSE_FACTOR)
            values_coarse[: binned.shape[0], : binned.shape[1]] = binned
        self._drawn, self._outside, self._value_range = drawn, outside, value_range

    def _keep(self, cols: npt.NDArray[np.float32]) -> int:
        room = self.capacity - self._kept
        n = max(0, min(room, int(cols.shape[1])))
        self.not_kept += cols.shape[1] - n
        if n == 0:
            return 0
        if self._kept + n > self._buffer.shape[1]:
            size = max(_INITIAL_ROWS, self._buffer.shape[1])
            while size < self._kept + n:
                size *= 2
            grown = np.empty((len(_COLUMNS), min(size, self.capacity)), np.float32)
            grown[:, : self._kept] = self._buffer[:, : self._kept]
            self._buffer = grown
        self._buffer[:, self._kept : self._kept + n] = cols[:, :n]
        self._kept += n
        return n

    def _draw(self, cols: npt.NDArray[np.float32]) -> int:
        s = self._settings
        with np.errstate(invalid="ignore"):
            ok = cols[_PROB] >= s.min_prob
            if math.isfinite(s.max_sigma_nm):  # a network without σ (NaN) is not filtered
                ok &= ~(np.fmax(cols[_SX], cols[_SY]) > s.max_sigma_nm)
        x_nm, y_nm = cols[_X][ok], cols[_Y][ok]
        if s.drift_corrected and self._drift is not None and x_nm.size:
            dx, dy = self._drift.at(cols[_T][ok])
            x_nm, y_nm = x_nm - dx.astype(np.float32), y_nm - dy.astype(np.float32)
        x = x_nm / np.float32(s.pixel_size_nm)
        y = y_nm / np.float32(s.pixel_size_nm)
        h, w = self._shape
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)  # NaN compares False: outside
        self._outside += int(inside.size - np.count_nonzero(inside))
        x, y = x[inside], y[inside]
        sigmas = None
        if s.gaussian:
            px = np.float32(s.pixel_size_nm)
            # No σ (a network that predicts none, e.g. Deep-STORM): one render pixel.
            sx = np.nan_to_num(cols[_SX][ok][inside], nan=float(px)) / px
            sy = np.nan_to_num(cols[_SY][ok][inside], nan=float(px)) / px
            sigmas = (sx, sy)
        self._splat(self._canvas, self._coarse, x, y, sigmas, None)
        if self._value_canvas is not None and self._value_coarse is not None:
            values = cols[_COLOUR_COLUMN[s.colour]][ok][inside]
            values = np.nan_to_num(values, nan=0.0).astype(np.float32)
            if values.size:
                low, high = float(values.min()), float(values.max())
                if self._value_range is not None:
                    low, high = min(low, self._value_range[0]), max(high, self._value_range[1])
                self._value_range = (low, high)
            self._splat(self._value_canvas, self._value_coarse, x, y, sigmas, values)
        self._drawn += int(x.size)
        return int(x.size)

    def _splat(
        self,
        canvas: Image,
        coarse: Image,
        x: npt.NDArray[np.float32],
        y: npt.NDArray[np.float32],
        sigmas: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None,
        weights: npt.NDArray[np.float32] | None,
    ) -> None:
        """Draw into ``canvas`` and its block sums ``coarse`` (render pixels, inside): Gaussians
        of (σx, σy) = ``sigmas``, or counts when None."""
        if sigmas is not None:
            sx, sy = sigmas
            splat_gaussians(
                canvas,
                self._pad,
                x,
                y,
                sx,
                sy,
                self._settings.max_kernel_radius_px,
                coarse=coarse,
                factor=COARSE_FACTOR,
                weights=weights,
            )
        else:
            splat_counts(canvas, x, y, weights)
            # Dividing by a power of two is exact: floor(x / 4) == floor(x) // 4.
            c = np.float32(COARSE_FACTOR)
            splat_counts(coarse, x / c, y / c, weights)


def _clip_range(span: tuple[float, float] | None, size: int) -> tuple[int, int]:
    if span is None:
        return 0, size
    lo = min(max(0, math.floor(span[0])), size - 1)
    hi = max(min(size, math.ceil(span[1])), lo + 1)
    return lo, hi
