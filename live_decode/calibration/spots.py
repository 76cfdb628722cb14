"""Spots in photon frames: detection, and maximum-likelihood fits of the isolated ones.

Each isolated spot is fitted with a pixel-integrated Gaussian (x, y, photons, background, σx, σy)
by Levenberg–Marquardt on Poisson-weighted residuals (the Poisson maximum-likelihood estimate to
first order), vectorised over all spots at once. Coordinates follow DESIGN.md §4: x is the column,
pixel j covers [j, j + 1).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.special import erf

SPOT_DTYPE = np.dtype(
    [
        ("frame", "<i8"),
        ("x_px", "<f8"),
        ("y_px", "<f8"),
        ("photons", "<f8"),
        ("bg", "<f8"),
        ("sigma_x_px", "<f8"),
        ("sigma_y_px", "<f8"),
        ("isolated", "?"),
        ("ok", "?"),
    ]
)
"""A detected spot; the fitted columns are NaN where ``isolated`` is False."""

ROI_HALF_PX = 4
"""Fit windows are (2·4 + 1)² = 81 px: ±3σ of a PSF of up to ~1.5 px."""
ISOLATION_PX = 5.0
"""A spot is isolated when no other detection is nearer than this (≈ 3–4 PSF σ)."""
SNR_THRESHOLD = 6.0
"""Detections: peaks of the smoothed, background-subtracted frame above this many of its noise σ."""


PERCENTILE_Z = 0.5244005127080407
"""How far below its mean the 30th percentile of normal noise sits, in σ (−Φ⁻¹(0.3))."""

PixelNoise = tuple[float, float]
"""A camera's pixel noise in photons: (excess noise factor F², read-noise variance σ_r²), so
that a pixel of expected background b varies by F²·b + σ_r²."""


def tile_levels(
    photons: npt.NDArray[np.float32], tile_px: int = 8, noise: PixelNoise | None = None
) -> npt.NDArray[np.float32]:
    """Per-frame background of each ``tile_px``² tile (T, ⌈H/tile⌉, ⌈W/tile⌉), photons/px.

    The tile's 30th percentile, which ignores the spots of all but the densest tiles; it sits
    below the mean by ~0.52 σ of the noise, which with ``noise`` is added back (b solved from
    p₃₀ = b − 0.52·√(F²·b + σ_r²)): at a background of a few photons on an EMCCD with read noise
    the bias is larger than the background itself, and a detector subtracting it finds
    hundreds of spots in empty tiles.
    """
    t, h, w = photons.shape
    ph, pw = -h % tile_px, -w % tile_px
    padded = np.pad(photons, ((0, 0), (0, ph), (0, pw)), mode="reflect")
    th, tw = padded.shape[1] // tile_px, padded.shape[2] // tile_px
    tiles = padded.reshape(t, th, tile_px, tw, tile_px)
    low = np.percentile(tiles, 30, axis=(2, 4)).astype(np.float64)
    if noise is not None:
        f2, read_var = noise
        level = low.copy()
        for _ in range(6):  # fixed point: the slope 0.26·F²/√(F²b + σ_r²) is well below 1
            level = low + PERCENTILE_Z * np.sqrt(f2 * np.maximum(level, 0.0) + read_var)
        low = level
    return np.asarray(low, dtype=np.float32)


def background_maps(
    photons: npt.NDArray[np.float32], tile_px: int = 8, noise: PixelNoise | None = None
) -> npt.NDArray[np.float32]:
    """Per-frame background (T, H, W), photons/px: :func:`tile_levels` spread back over the frame
    and smoothed."""
    return spread_tiles(tile_levels(photons, tile_px, noise), photons.shape[1:], tile_px)


def spread_tiles(
    low: npt.NDArray[np.float32], shape: tuple[int, ...], tile_px: int = 8
) -> npt.NDArray[np.float32]:
    """Tile levels (T, h, w) as smoothed maps (T, H, W) of a frame ``shape`` (H, W)."""
    h, w = shape
    full = np.repeat(np.repeat(low, tile_px, axis=1), tile_px, axis=2)
    smooth = ndimage.uniform_filter(full, size=(1, tile_px, tile_px), mode="nearest")
    return np.asarray(smooth[:, :h, :w])


def detect(
    photons: npt.NDArray[np.float32],
    bg: npt.NDArray[np.float32],
    excess_noise_sq: float,
    snr: float = SNR_THRESHOLD,
    read_var: float = 0.0,
) -> npt.NDArray[np.int64]:
    """Local maxima of the smoothed signal above ``snr`` σ: (N, 3) integer (frame, row, col).

    ``read_var`` is the camera's read-noise variance in photons² (added to the shot noise).
    """
    sm = ndimage.gaussian_filter(photons - bg, sigma=(0, 1.0, 1.0), mode="reflect")
    # Noise of a unit-σ Gaussian smoothing of white noise of variance F²·bg + σ_r²: ×1/(2√π).
    noise = np.sqrt(np.maximum(excess_noise_sq * bg + read_var, 1.0)) / (2.0 * np.sqrt(np.pi))
    peaks = (sm == ndimage.maximum_filter(sm, size=(1, 3, 3), mode="reflect")) & (sm > snr * noise)
    return np.argwhere(peaks)


def isolated(points: npt.NDArray[np.int64], min_distance_px: float) -> npt.NDArray[np.bool_]:
    """Detections with no other detection of the same frame within ``min_distance_px``."""
    from scipy.spatial import cKDTree

    out = np.ones(len(points), dtype=bool)
    for f in np.unique(points[:, 0]):
        idx = np.nonzero(points[:, 0] == f)[0]
        if len(idx) < 2:
            continue
        tree = cKDTree(points[idx, 1:].astype(np.float64))
        d, _ = tree.query(points[idx, 1:].astype(np.float64), k=2)
        out[idx] = d[:, 1] >= min_distance_px
    return out


def _integrated(
    centre: npt.NDArray[np.float64], sigma: npt.NDArray[np.float64], n: int
) -> npt.NDArray[np.float64]:
    """(S, n): the fraction of a 1-D Gaussian (S,) in each of n unit pixels [0, 1), [1, 2), ..."""
    edges = np.arange(n + 1, dtype=np.float64)[None, :]
    cdf = 0.5 * (1.0 + erf((edges - centre[:, None]) / (np.sqrt(2.0) * sigma[:, None])))
    return np.asarray(np.diff(cdf, axis=1))


def _model(p: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.float64]:
    """(S, n, n) expected photons for parameters (S, 6): x, y, N, bg, σx, σy (window px)."""
    ex = _integrated(p[:, 0], p[:, 4], n)
    ey = _integrated(p[:, 1], p[:, 5], n)
    return np.asarray(p[:, 2, None, None] * ey[:, :, None] * ex[:, None, :] + p[:, 3, None, None])


def fit_gaussians(
    rois: npt.NDArray[np.float64], iterations: int = 25
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Fit (S, n, n) photon windows; returns parameters (S, 6) and a convergence flag (S,).

    Parameters are x, y (window px, corner origin), photons, background (photons/px), σx, σy.
    """
    s, n, _ = rois.shape
    bg0 = np.minimum(rois[:, 0, :].mean(1), rois[:, -1, :].mean(1))
    bg0 = np.maximum(np.minimum(bg0, np.median(rois.reshape(s, -1), axis=1)), 0.1)
    n0 = np.maximum((rois - bg0[:, None, None]).sum(axis=(1, 2)), 10.0)
    p = np.stack([np.full(s, n / 2), np.full(s, n / 2), n0, bg0, np.ones(s), np.ones(s)], axis=1)
    lam = np.full(s, 1e-2)
    steps = np.array([1e-4, 1e-4, 1e-3, 1e-3, 1e-4, 1e-4])
    for _ in range(iterations):
        mu = _model(p, n)
        w = 1.0 / np.maximum(mu, 1.0)
        r = (rois - mu).reshape(s, -1)
        jac = np.empty((s, n * n, 6))
        for k in range(6):
            h = steps[k] * np.maximum(np.abs(p[:, k]), 1.0)
            dp = np.zeros_like(p)
            dp[:, k] = h
            jac[:, :, k] = (
                (_model(p + dp, n) - _model(p - dp, n)) / (2 * h[:, None, None])
            ).reshape(s, -1)
        wf = w.reshape(s, -1)
        jtw = jac.transpose(0, 2, 1) * wf[:, None, :]
        a = jtw @ jac
        g = (jtw @ r[:, :, None])[:, :, 0]
        cost = (wf * r * r).sum(1)
        a_damped = (
            a + lam[:, None, None] * np.eye(6)[None] * np.diagonal(a, axis1=1, axis2=2)[:, :, None]
        )
        try:
            delta = np.linalg.solve(a_damped, g[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = np.zeros_like(p)
        trial = p + delta
        trial[:, 2:4] = np.maximum(trial[:, 2:4], 1e-3)
        trial[:, 4:6] = np.clip(trial[:, 4:6], 0.3, n / 2)
        r_t = rois - _model(trial, n)
        cost_t = (wf * r_t.reshape(s, -1) ** 2).sum(1)
        better = cost_t < cost
        p = np.where(better[:, None], trial, p)
        lam = np.where(better, lam * 0.3, lam * 10.0)
    inside = (p[:, 0] > 1) & (p[:, 0] < n - 1) & (p[:, 1] > 1) & (p[:, 1] < n - 1)
    ok = inside & (p[:, 4] < n / 2 - 0.01) & (p[:, 5] < n / 2 - 0.01) & (p[:, 4] > 0.31)
    return p, ok


def find_spots(
    photons: npt.NDArray[np.float32],
    excess_noise_sq: float,
    snr: float = SNR_THRESHOLD,
    max_fits: int = 4000,
    read_var: float = 0.0,
    bg: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.void]:
    """Detect every spot of a photon movie (T, H, W) and fit the isolated ones (at most
    ``max_fits`` of them, drawn at random; the others keep NaN fits and ``ok`` False);
    ``read_var`` is the read-noise variance in photons² (see :func:`detect`); ``bg`` the
    movie's :func:`background_maps` with that noise, where the caller has them already.

    Returns a structured array of :data:`SPOT_DTYPE`, one row per detection.
    """
    if bg is None:
        bg = background_maps(photons, noise=(excess_noise_sq, read_var))
    points = detect(photons, bg, excess_noise_sq, snr, read_var)
    out = np.zeros(len(points), dtype=SPOT_DTYPE)
    out["frame"] = points[:, 0]
    out["x_px"] = points[:, 2] + 0.5
    out["y_px"] = points[:, 1] + 0.5
    for name in ("photons", "bg", "sigma_x_px", "sigma_y_px"):
        out[name] = np.nan
    iso = isolated(points, ISOLATION_PX)
    h, w = photons.shape[1:]
    k = ROI_HALF_PX
    inside = (
        (points[:, 1] >= k) & (points[:, 1] < h - k) & (points[:, 2] >= k) & (points[:, 2] < w - k)
    )
    fit_idx = np.nonzero(iso & inside)[0]
    if len(fit_idx) > max_fits:  # medians converge long before: bounded time on long movies
        fit_idx = np.sort(np.random.default_rng(0).choice(fit_idx, max_fits, replace=False))
    out["isolated"] = iso & inside
    if len(fit_idx) == 0:
        return out
    f, r, c = points[fit_idx].T
    offs = np.arange(-k, k + 1)
    rows = r[:, None, None] + offs[None, :, None]
    cols = c[:, None, None] + offs[None, None, :]
    rois = photons[f[:, None, None], rows, cols].astype(np.float64)
    p, ok = fit_gaussians(rois)
    out["x_px"][fit_idx] = c - k + p[:, 0]
    out["y_px"][fit_idx] = r - k + p[:, 1]
    out["photons"][fit_idx] = p[:, 2]
    out["bg"][fit_idx] = p[:, 3]
    out["sigma_x_px"][fit_idx] = p[:, 4]
    out["sigma_y_px"][fit_idx] = p[:, 5]
    out["ok"][fit_idx] = ok
    return out
