"""NeNA: localization precision from nearest neighbours in adjacent frames (Endesfelder 2014).

A fluorophore that is on for several frames is localized once per frame; the distance between its
localizations in frames t and t+1 is the difference of two independent errors, so for a precision
σ its distribution is ``d/(2σ²)·exp(−d²/(4σ²))`` (a Rayleigh of scale √2·σ). Endesfelder et al.
(Histochem. Cell Biol. 142, 193–199, 2014) fit the histogram of each localization's nearest
neighbour in the next frame with three terms: that single-molecule term, a Gaussian of close
neighbours at distance d_c (structure: two fluorophores on one target), and a linear term for
unrelated neighbours (a uniform density gives a pair density ∝ d).

:class:`NenaAccumulator` keeps only the histogram and the last two frames' positions, so an update
costs O(batch · log n_frame) and the fit costs O(bins), whatever the length of the run.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.spatial import cKDTree

FloatArray = npt.NDArray[np.float64]
log = logging.getLogger("live_decode.quality.nena")


def nena_density(
    d_nm: FloatArray,
    a_single: float,
    sigma_nm: float,
    a_close: float,
    d_close_nm: float,
    w_close_nm: float,
    slope: float,
) -> FloatArray:
    """Endesfelder's three-term model of the adjacent-frame nearest-neighbour histogram.

    Parameters
    ----------
    d_nm : (B,) float
        Distances, nm.
    a_single, a_close : float
        Areas (counts × bin width) of the single-molecule and close-neighbour terms.
    sigma_nm : float
        Localization precision (NeNA), nm.
    d_close_nm, w_close_nm : float
        Centre and width of the close-neighbour Gaussian, nm.
    slope : float
        Slope of the unrelated-neighbour term, counts per bin per nm.

    Returns
    -------
    (B,) float
        Expected value of the histogram (per unit of the area terms' bin width).
    """
    single = a_single * d_nm / (2.0 * sigma_nm**2) * np.exp(-(d_nm**2) / (4.0 * sigma_nm**2))
    close = (
        a_close
        / (math.sqrt(2.0 * math.pi) * w_close_nm)
        * np.exp(-0.5 * ((d_nm - d_close_nm) / w_close_nm) ** 2)
    )
    return np.asarray(single + close + slope * d_nm, dtype=np.float64)


@dataclass(frozen=True)
class NenaResult:
    """A NeNA fit.

    Attributes
    ----------
    sigma_nm : float
        Localization precision, nm (NaN when there were too few pairs to fit).
    n_pairs : int
        Nearest-neighbour pairs in the histogram.
    d_nm, counts : (B,) float
        Bin centres (nm) and the histogram.
    fit : (B,) float
        The fitted model at the bin centres (counts).
    """

    sigma_nm: float
    n_pairs: int
    d_nm: FloatArray
    counts: FloatArray
    fit: FloatArray


class NenaAccumulator:
    """Adjacent-frame nearest-neighbour histogram, built incrementally; NeNA fitted on demand.

    Localizations must arrive in non-decreasing frame order (the worker's order); a frame may
    be split over several :meth:`add` calls. Frame t is paired with t+1 once a later frame has
    arrived (frame t+1 is then complete), so the histogram lags the stream by one frame.

    Parameters
    ----------
    max_distance_nm : float
        Neighbours farther than this are not counted (the histogram's range).
    bin_nm : float
        Histogram bin width, nm.
    frame_gap : int
        Pair frame t with frame t + ``frame_gap`` (1: adjacent frames, as Endesfelder). A network
        that sees frames t−1, t, t+1 (temporal context) makes the errors of t and t+1 (and t+2)
        correlated, which shrinks the distances: 3 pairs frames whose inputs share no frame.
    """

    def __init__(
        self, max_distance_nm: float = 150.0, bin_nm: float = 1.0, frame_gap: int = 1
    ) -> None:
        if max_distance_nm <= 0 or bin_nm <= 0 or frame_gap < 1:
            raise ValueError("max_distance_nm and bin_nm must be > 0, frame_gap >= 1")
        self.frame_gap = int(frame_gap)
        self.max_distance_nm = float(max_distance_nm)
        self.bin_nm = float(bin_nm)
        n_bins = math.ceil(max_distance_nm / bin_nm)
        self.counts = np.zeros(n_bins, dtype=np.float64)
        self._recent: dict[int, FloatArray] = {}  # the last frame_gap complete frames
        self._open: tuple[int, FloatArray] | None = None  # frame still arriving
        self.n_pairs = 0

    @property
    def d_nm(self) -> FloatArray:
        """Bin centres, nm."""
        return np.asarray((np.arange(self.counts.size) + 0.5) * self.bin_nm, dtype=np.float64)

    def add(self, frame: npt.ArrayLike, x_nm: npt.ArrayLike, y_nm: npt.ArrayLike) -> None:
        """Add localizations (N,) each: frame index (non-decreasing), x and y in nm."""
        f = np.asarray(frame, dtype=np.int64)
        xy = np.column_stack([np.asarray(x_nm, np.float64), np.asarray(y_nm, np.float64)])
        if f.size == 0:
            return
        if np.any(np.diff(f) < 0):
            order = np.argsort(f, kind="stable")
            f, xy = f[order], xy[order]
        starts = np.flatnonzero(np.r_[True, f[1:] != f[:-1]])
        ends = np.r_[starts[1:], f.size]
        for s, e in zip(starts, ends, strict=True):
            self._add_frame(int(f[s]), xy[s:e])

    def _add_frame(self, frame: int, xy: FloatArray) -> None:
        if self._open is not None and frame == self._open[0]:
            self._open = (frame, np.vstack([self._open[1], xy]))
            return
        if self._open is not None and frame < self._open[0]:
            log.warning("NeNA: frame %d arrived after frame %d; ignored", frame, self._open[0])
            return
        if self._open is not None:
            self._close(*self._open)
        self._open = (frame, xy)

    def _close(self, frame: int, xy: FloatArray) -> None:
        """Frame ``frame`` is complete: pair frame ``frame − frame_gap``'s localizations with it."""
        earlier = self._recent.get(frame - self.frame_gap)
        if earlier is not None and len(xy) and len(earlier):
            tree = cKDTree(xy)
            dist, _ = tree.query(earlier, k=1, distance_upper_bound=self.max_distance_nm)
            dist = dist[np.isfinite(dist)]
            idx = np.minimum((dist / self.bin_nm).astype(np.int64), self.counts.size - 1)
            np.add.at(self.counts, idx, 1.0)
            self.n_pairs += int(dist.size)
        self._recent[frame] = xy
        for old in [f for f in self._recent if f <= frame - self.frame_gap]:
            del self._recent[old]

    def fit(self, min_pairs: int = 100) -> NenaResult:
        """Fit the three-term model to the histogram so far (O(bins), not O(localizations))."""
        d, counts = self.d_nm, self.counts.copy()
        nan = NenaResult(math.nan, self.n_pairs, d, counts, np.full_like(d, math.nan))
        if self.n_pairs < min_pairs:
            return nan
        popt = fit_nena_histogram(d, counts)
        if popt is None:
            return nan
        return NenaResult(float(popt[1]), self.n_pairs, d, counts, nena_density(d, *popt))


def fit_nena_histogram(d_nm: FloatArray, counts: FloatArray) -> FloatArray | None:
    """Least-squares fit of :func:`nena_density` to a histogram; the best of a few starts.

    Returns the parameters (a_single, sigma_nm, a_close, d_close_nm, w_close_nm, slope), or None
    when no start converged.
    """
    bin_nm = float(d_nm[1] - d_nm[0]) if d_nm.size > 1 else 1.0
    area = float(counts.sum() * bin_nm)
    peak = float(d_nm[np.argmax(counts)])
    sigma0 = max(peak / math.sqrt(2.0), bin_nm)
    d_max = float(d_nm[-1])
    tail = float(np.mean(counts[-max(3, counts.size // 10) :]) / max(d_max, bin_nm))
    starts = [
        [0.8 * area, sigma0, 0.1 * area, 2.0 * sigma0, sigma0, 0.5 * tail],
        [0.8 * area, sigma0, 0.1 * area, 0.5 * d_max, 0.2 * d_max, 0.5 * tail],
        [0.9 * area, 0.8 * sigma0, 0.01 * area, 3.0 * sigma0, 2.0 * sigma0, tail],
    ]
    lower = [0.0, 0.1 * bin_nm, 0.0, 0.0, bin_nm, 0.0]
    upper = [np.inf, d_max, np.inf, d_max, d_max, np.inf]
    best: FloatArray | None = None
    best_residual = math.inf
    for p0 in starts:
        p0 = list(np.clip(p0, np.add(lower, 1e-12), upper))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                popt, _ = curve_fit(
                    nena_density, d_nm, counts, p0=p0, bounds=(lower, upper), max_nfev=400
                )
        except (RuntimeError, ValueError) as exc:
            log.debug("NeNA fit start %s failed: %s", p0, exc)
            continue
        residual = float(np.sum((nena_density(d_nm, *popt) - counts) ** 2))
        if residual < best_residual:
            best, best_residual = np.asarray(popt, dtype=np.float64), residual
    return best
