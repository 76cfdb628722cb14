"""Stage drift by redundant cross-correlation (Wang, Schnitzbauer et al., Opt. Express 22, 2014).

Localizations are binned into time windows of ``window_frames`` frames; each window is rendered as
a histogram image, blurred by a small Gaussian. The shift between every pair of windows (i, j) is
the peak of their cross-correlation (sub-pixel: a Gaussian through the peak and its neighbours),
an estimate of d_j − d_i. The drifts d of all windows solve the over-determined system in the
least-squares sense; pairs whose residual exceeds ``max_residual_nm`` are dropped and the system is
solved again (RCC's outlier rejection). The drift of each frame is interpolated linearly between
window centres and extrapolated from the end windows.

Live: a window is correlated with the earlier ones as soon as it completes. Only the spectra of the
last ``max_partners`` windows are kept, so memory and cost per window are bounded; the solve is an
n × n system (n windows), cheap for any realistic run.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.ndimage import gaussian_filter
from scipy.sparse.linalg import spsolve

FloatArray = npt.NDArray[np.float64]
log = logging.getLogger("live_decode.quality.drift")
MAX_IMAGE_SIDE_PX = 1024


@dataclass(frozen=True)
class DriftTrace:
    """Estimated drift per window and per frame (position offset from frame 0's, nm).

    Attributes
    ----------
    window_frame : (K,) float
        Centre frame of each completed window.
    window_dx_nm, window_dy_nm : (K,) float
        Drift of each window.
    """

    window_frame: FloatArray
    window_dx_nm: FloatArray
    window_dy_nm: FloatArray

    def at(self, frame: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
        """Drift (dx, dy) in nm at the given frames; zeros before two windows have completed."""
        f = np.asarray(frame, dtype=np.float64)
        if self.window_frame.size < 2:
            return np.zeros_like(f), np.zeros_like(f)
        return _interp(f, self.window_frame, self.window_dx_nm), _interp(
            f, self.window_frame, self.window_dy_nm
        )


def _interp(f: FloatArray, xp: FloatArray, yp: FloatArray) -> FloatArray:
    """Linear interpolation, linearly extrapolated from the two end points."""
    out = np.interp(f, xp, yp)
    lo, hi = f < xp[0], f > xp[-1]
    out[lo] = yp[0] + (f[lo] - xp[0]) * (yp[1] - yp[0]) / (xp[1] - xp[0])
    out[hi] = yp[-1] + (f[hi] - xp[-1]) * (yp[-1] - yp[-2]) / (xp[-1] - xp[-2])
    return np.asarray(out, dtype=np.float64)


def correlation_shift(
    spec_a: npt.NDArray[np.complex128],
    spec_b: npt.NDArray[np.complex128],
    shape: tuple[int, int],
    max_shift_px: int,
) -> tuple[float, float]:
    """Shift (dy, dx) in px of image b relative to image a from their rFFT spectra.

    The cross-correlation C(s) = Σ a(x)·b(x + s) peaks at the displacement of b's content.
    """
    corr = np.fft.irfft2(np.conj(spec_a) * spec_b, s=shape)
    corr = np.fft.fftshift(corr)
    cy, cx = shape[0] // 2, shape[1] // 2
    m = max_shift_px
    roi = corr[cy - m : cy + m + 1, cx - m : cx + m + 1]
    peak_y, peak_x = np.unravel_index(int(np.argmax(roi)), roi.shape)
    iy = min(max(int(peak_y), 1), roi.shape[0] - 2)
    ix = min(max(int(peak_x), 1), roi.shape[1] - 2)

    def vertex(lo: float, mid: float, hi: float) -> float:
        # Gaussian through three points: a parabola through their logarithms.
        floor = 1e-12 * max(abs(mid), 1.0)
        la, lb, lc = (math.log(max(v, floor)) for v in (lo, mid, hi))
        den = la - 2.0 * lb + lc
        return 0.0 if den >= 0 else float(np.clip(0.5 * (la - lc) / den, -1.0, 1.0))

    dy = iy + vertex(roi[iy - 1, ix], roi[iy, ix], roi[iy + 1, ix]) - m
    dx = ix + vertex(roi[iy, ix - 1], roi[iy, ix], roi[iy, ix + 1]) - m
    return float(dy), float(dx)


def solve_rcc(
    n: int, ij: npt.NDArray[np.int64], r_nm: FloatArray, max_residual_nm: float
) -> tuple[FloatArray, FloatArray]:
    """Window drifts (dy, dx), (n,) each with d_0 = 0, from pairwise shifts.

    Parameters
    ----------
    ij : (P, 2) int
        Window pairs (i, j), i < j.
    r_nm : (P, 2) float
        Measured d_j − d_i as (dy, dx), nm.

    The normal equations are the pair graph's Laplacian (sparse, banded by ``max_partners``), so
    a solve costs O(P) and stays cheap over hours of windows. Windows without any pair (nothing
    localized) get a tiny ridge that holds them at 0 instead of making the system singular.
    """
    if n == 1 or len(ij) == 0:
        return np.zeros(n), np.zeros(n)
    use = np.ones(len(ij), dtype=bool)
    d = np.zeros((n, 2))
    for _ in range(3):
        i, j, r = ij[use, 0], ij[use, 1], r_nm[use]
        ones = np.ones(len(i))
        lap = sparse.coo_matrix(
            (np.r_[ones, ones, -ones, -ones], (np.r_[i, j, i, j], np.r_[i, j, j, i])), shape=(n, n)
        ).tocsc()
        rhs = np.zeros((n, 2))
        np.add.at(rhs, j, r)
        np.subtract.at(rhs, i, r)
        reduced = lap[1:, 1:] + sparse.identity(n - 1, format="csc") * 1e-9
        sol = np.column_stack([spsolve(reduced, rhs[1:, k]) for k in range(2)])
        d = np.vstack([np.zeros((1, 2)), sol.reshape(n - 1, 2)])
        err = np.hypot(*(d[ij[:, 1]] - d[ij[:, 0]] - r_nm).T)
        keep = err <= max_residual_nm
        # Keep every window connected: never drop the pairs of consecutive windows.
        keep |= ij[:, 1] - ij[:, 0] == 1
        if np.array_equal(keep, use):
            break
        use = keep
    return d[:, 0], d[:, 1]


class DriftEstimator:
    """Live RCC drift estimate from localizations arriving in frame order.

    Parameters
    ----------
    extent_nm : (height, width)
        Field of view, nm.
    window_frames : int
        Frames per time window.
    pixel_nm : float
        Pixel of the window images (coarser for fields wider than 1024 px at this pixel).
    blur_nm : float
        Gaussian blur of the window images before correlation (smooths the peak).
    max_shift_nm : float
        Largest drift between two windows looked for.
    max_partners : int
        Each new window is correlated with at most this many previous windows.
    max_residual_nm : float
        RCC outlier threshold on a pair's residual.
    """

    def __init__(
        self,
        extent_nm: tuple[float, float],
        window_frames: int = 200,
        pixel_nm: float = 20.0,
        blur_nm: float = 20.0,
        max_shift_nm: float = 1000.0,
        max_partners: int = 20,
        max_residual_nm: float = 20.0,
    ) -> None:
        if window_frames < 1:
            raise ValueError("window_frames must be >= 1")
        h_nm, w_nm = float(extent_nm[0]), float(extent_nm[1])
        self.window_frames = int(window_frames)
        self.pixel_nm = max(float(pixel_nm), max(h_nm, w_nm) / MAX_IMAGE_SIDE_PX)
        self.shape = (math.ceil(h_nm / self.pixel_nm), math.ceil(w_nm / self.pixel_nm))
        self.blur_px = blur_nm / self.pixel_nm
        self.max_shift_px = max(
            2, min(math.ceil(max_shift_nm / self.pixel_nm), min(self.shape) // 2 - 2)
        )
        self.max_residual_nm = max_residual_nm
        self._spectra: deque[tuple[int, npt.NDArray[np.complex128]]] = deque(maxlen=max_partners)
        self._ij = np.zeros((0, 2), dtype=np.int64)  # window pairs (i, j) so far
        self._r_nm = np.zeros((0, 2))  # their shifts (dy, dx), nm
        self._window = 0
        self._image = np.zeros(self.shape, dtype=np.float64)
        self._n_windows = 0
        self._trace = DriftTrace(np.zeros(0), np.zeros(0), np.zeros(0))

    @property
    def trace(self) -> DriftTrace:
        """The estimate after the last completed window."""
        return self._trace

    def add(self, frame: npt.ArrayLike, x_nm: npt.ArrayLike, y_nm: npt.ArrayLike) -> bool:
        """Add localizations (N,) each (frames non-decreasing); True when a window completed."""
        f = np.asarray(frame, dtype=np.int64)
        x, y = np.asarray(x_nm, np.float64), np.asarray(y_nm, np.float64)
        win = f // self.window_frames
        completed = False
        for w in np.unique(win):
            if w < self._window:
                continue  # late localizations of a finished window: ignored
            while w > self._window:
                self._finish_window()
                completed = True
            sel = win == w
            self._count(x[sel], y[sel])
        return completed

    def finish(self) -> DriftTrace:
        """End of stream: close the window in progress (if it holds anything) and solve."""
        if self._image.any():
            self._finish_window()
        return self._trace

    def _count(self, x_nm: FloatArray, y_nm: FloatArray) -> None:
        col = np.floor(x_nm / self.pixel_nm).astype(np.int64)
        row = np.floor(y_nm / self.pixel_nm).astype(np.int64)
        ok = (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])
        np.add.at(self._image, (row[ok], col[ok]), 1.0)

    def _finish_window(self) -> None:
        k = self._window
        image = gaussian_filter(self._image, self.blur_px, mode="constant")
        image -= image.mean()
        spec = np.fft.rfft2(image)
        new_ij, new_r = [], []
        for j, other in self._spectra:
            dy, dx = correlation_shift(other, spec, self.shape, self.max_shift_px)
            new_ij.append((j, k))
            new_r.append((dy * self.pixel_nm, dx * self.pixel_nm))
        if new_ij:
            self._ij = np.vstack([self._ij, np.asarray(new_ij, dtype=np.int64)])
            self._r_nm = np.vstack([self._r_nm, np.asarray(new_r, dtype=np.float64)])
        self._spectra.append((k, spec))
        self._image = np.zeros(self.shape, dtype=np.float64)
        self._window += 1
        self._n_windows = self._window
        wy, wx = solve_rcc(self._n_windows, self._ij, self._r_nm, self.max_residual_nm)
        centres = np.asarray((np.arange(self._n_windows) + 0.5) * self.window_frames - 0.5, float)
        trace = DriftTrace(centres, wx, wy)
        # Report drift relative to frame 0.
        if self._n_windows >= 2:
            x0, y0 = trace.at(np.zeros(1))
            trace = DriftTrace(centres, wx - x0[0], wy - y0[0])
        self._trace = trace
