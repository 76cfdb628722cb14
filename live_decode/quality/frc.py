"""FRC resolution (Nieuwenhuizen et al., Nat. Methods 10, 557–562, 2013), incrementally.

Each localization is assigned at random to one of two halves as it arrives and counted into that
half's histogram image at a fine pixel. The FRC is computed from the two images when asked: the
cost is that of two FFTs of the image, independent of the number of localizations so far.

As in Picasso's ``postprocess.frc`` the images are binned to a pixel of half the localization
precision, cropped to the central square of odd side, windowed with a Tukey mask, and the ring
correlation is smoothed (local linear LOESS) before the resolution is read where it falls below
the 1/7 threshold. Nieuwenhuizen's correction for repeated localizations of one fluorophore is
not applied (Picasso does not apply it either), so with heavy blinking the value is optimistic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
FRC_THRESHOLD = 1.0 / 7.0
MAX_IMAGE_SIDE_PX = 4096
"""The accumulated images never exceed this side: large fields get a coarser fine pixel."""


@dataclass(frozen=True)
class FrcResult:
    """An FRC curve and the resolution it gives.

    Attributes
    ----------
    resolution_nm : float
        1 / (spatial frequency where the smoothed FRC crosses 1/7), nm; NaN if it never does.
    frequencies_per_nm, curve, smooth : (R,) float
        Ring frequencies (nm⁻¹), the raw FRC and its LOESS-smoothed version.
    pixel_nm : float
        Pixel of the images the FRC was computed on.
    n_locs : int
        Localizations in the two halves together.
    """

    resolution_nm: float
    frequencies_per_nm: FloatArray
    curve: FloatArray
    smooth: FloatArray
    pixel_nm: float
    n_locs: int


def fast_odd_side(side: int) -> int:
    """The largest odd n ≤ side with only the factors 3, 5, 7 (a fast FFT size; a prime side
    such as 1279 takes ~10× longer)."""
    n = side if side % 2 else side - 1
    while n > 1:
        m = n
        for p in (3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n -= 2
    return 1


def tukey_mask(side: int) -> FloatArray:
    """(side, side) Tukey window, flat over the central 3/4 in each direction (Picasso's nfac=8)."""
    nfac = 8
    x = (np.arange(side) - side / 2) / side
    m = 0.5 - 0.5 * np.cos(np.pi * nfac * x)
    m[np.abs(x) < (nfac - 2) / (nfac * 2)] = 1.0
    return np.asarray(np.outer(m, m), dtype=np.float64)


def ring_index(side: int) -> npt.NDArray[np.int64]:
    """(side², ) ring n of each pixel (n ≤ r < n+1 from the centre); side // 2 + 1 beyond."""
    c = side // 2
    yy, xx = np.ogrid[:side, :side]
    ring = np.floor(np.sqrt((xx - c) ** 2 + (yy - c) ** 2)).astype(np.int64).ravel()
    return np.asarray(np.minimum(ring, c + 1), dtype=np.int64)


def ring_sums(image: npt.NDArray[Any], ring: npt.NDArray[np.int64] | None = None) -> FloatArray:
    """Sums of a real image over rings n ≤ r < n+1 around the centre (square, odd side)."""
    side = image.shape[0]
    ring = ring_index(side) if ring is None else ring
    sums = np.bincount(ring, weights=np.asarray(image, np.float64).ravel(), minlength=side // 2 + 2)
    return np.asarray(sums[: side // 2 + 1], dtype=np.float64)


def loess(values: FloatArray, span: int) -> FloatArray:
    """Local linear regression with tricube weights over the ``span`` nearest samples."""
    n = values.size
    span = min(max(span + 1 - span % 2, 3), n)
    i = np.arange(n)
    lo = np.clip(i - span // 2, 0, n - span)
    xs = (lo[:, None] + np.arange(span)[None, :]).astype(np.float64)  # (n, span) windows
    ys = values[xs.astype(np.int64)]
    dist = np.abs(xs - i[:, None])
    h = dist.max(axis=1, keepdims=True) + 1e-12
    w = (1.0 - (dist / h) ** 3) ** 3
    sw = w.sum(axis=1, keepdims=True)
    mx, my = (w * xs).sum(axis=1, keepdims=True) / sw, (w * ys).sum(axis=1, keepdims=True) / sw
    var = (w * (xs - mx) ** 2).sum(axis=1)
    cov = (w * (xs - mx) * (ys - my)).sum(axis=1)
    slope = np.divide(cov, var, out=np.zeros(n), where=var > 0)
    return np.asarray(my[:, 0] + slope * (i - mx[:, 0]), dtype=np.float64)


def frc_from_images(im1: FloatArray, im2: FloatArray, pixel_nm: float) -> FrcResult:
    """FRC of two square images of equal shape; see the module docstring for the recipe."""
    if im1.shape != im2.shape or im1.shape[0] != im1.shape[1]:
        raise ValueError(
            f"FRC needs two square images of equal shape, got {im1.shape}, {im2.shape}"
        )
    side = fast_odd_side(im1.shape[0])
    if side < im1.shape[0]:  # odd (a centre pixel) and FFT-friendly: trim the masked edges
        cut = (im1.shape[0] - side) // 2
        im1, im2 = im1[cut : cut + side, cut : cut + side], im2[cut : cut + side, cut : cut + side]
    mask = tukey_mask(side)
    f1 = np.fft.fftshift(np.fft.fft2(im1 * mask))
    f2 = np.fft.fftshift(np.fft.fft2(im2 * mask))
    ring = ring_index(side)
    num = ring_sums(np.real(f1 * np.conj(f2)), ring)
    den = np.sqrt(np.abs(ring_sums(np.abs(f1) ** 2, ring) * ring_sums(np.abs(f2) ** 2, ring)))
    with np.errstate(divide="ignore", invalid="ignore"):
        curve = np.asarray(num / den, dtype=np.float64)
    curve[~np.isfinite(curve)] = 0.0
    smooth = loess(curve, max(math.ceil((side // 2) / 20), 5))
    freq = np.arange(curve.size) / side / pixel_nm
    resolution = math.nan
    below = np.flatnonzero((smooth[:-1] >= FRC_THRESHOLD) & (smooth[1:] < FRC_THRESHOLD))
    if below.size:
        i = int(below[0]) + 1
        f_a, f_b, r_a, r_b = freq[i - 1], freq[i], smooth[i - 1], smooth[i]
        f_res = f_a + (FRC_THRESHOLD - r_a) * (f_b - f_a) / (r_b - r_a)
        resolution = float(1.0 / f_res) if f_res > 0 else math.nan
    n = round(float(im1.sum() + im2.sum()))
    return FrcResult(resolution, freq, curve, smooth, pixel_nm, n)


class FrcAccumulator:
    """Two histogram images (random halves) over the field of view, updated per batch.

    Parameters
    ----------
    extent_nm : (height, width)
        Field of view in nm; localizations outside [0, extent) are not counted.
    pixel_nm : float
        Fine pixel of the accumulated images; FRC bins them to ~precision/2 (never finer).
    seed : int
        Seed of the random split.
    """

    def __init__(
        self, extent_nm: tuple[float, float], pixel_nm: float = 5.0, seed: int = 0
    ) -> None:
        h_nm, w_nm = float(extent_nm[0]), float(extent_nm[1])
        if h_nm <= 0 or w_nm <= 0 or pixel_nm <= 0:
            raise ValueError("extent_nm and pixel_nm must be > 0")
        self.pixel_nm = max(float(pixel_nm), max(h_nm, w_nm) / MAX_IMAGE_SIDE_PX)
        self.shape = (math.ceil(h_nm / self.pixel_nm), math.ceil(w_nm / self.pixel_nm))
        self.halves = np.zeros((2, *self.shape), dtype=np.float32)
        self._rng = np.random.default_rng(seed)
        self.n_locs = 0

    def add(self, x_nm: npt.ArrayLike, y_nm: npt.ArrayLike) -> None:
        """Count localizations (N,) each, x (column) and y (row) in nm, into a random half each."""
        col = np.floor(np.asarray(x_nm, np.float64) / self.pixel_nm).astype(np.int64)
        row = np.floor(np.asarray(y_nm, np.float64) / self.pixel_nm).astype(np.int64)
        ok = (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])
        half = self._rng.integers(0, 2, size=row.size)
        flat = (half * self.shape[0] + row) * self.shape[1] + col
        np.add.at(self.halves.reshape(-1), flat[ok], 1.0)
        self.n_locs += int(ok.sum())

    def compute(self, precision_nm: float | None = None) -> FrcResult:
        """FRC of the two halves so far, binned to a pixel ≈ ``precision_nm``/2 (Picasso's rule).

        Without a precision (or a NaN one) the fine pixel is used.
        """
        k = 1
        if precision_nm is not None and math.isfinite(precision_nm) and precision_nm > 0:
            k = max(1, round(precision_nm / 2.0 / self.pixel_nm))
        h, w = self.shape[0] // k, self.shape[1] // k
        side = min(h, w)
        if side < 8:
            raise ValueError("the field of view is too small for an FRC at this pixel")
        binned = self.halves[:, : h * k, : w * k].reshape(2, h, k, w, k).sum(axis=(2, 4))
        r0, c0 = (h - side) // 2, (w - side) // 2
        crop = binned[:, r0 : r0 + side, c0 : c0 + side].astype(np.float64)
        return frc_from_images(crop[0], crop[1], self.pixel_nm * k)
