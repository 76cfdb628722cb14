"""A bead z-stack → the averaged 3-D PSF of the microscope, with its σx(z), σy(z).

A bead stack is a TIFF of Z frames of fluorescent beads (sub-diffraction, bright, sparse), the
stage moved by ``z_step_nm`` between frames; plane index increasing = z increasing. Each bead is
cut into a K×K window on every plane, each window is fitted with a pixel-integrated elliptical
Gaussian (:func:`live_decode.calibration.spots.fit_gaussians`), which gives the bead's sub-pixel
x, y (the photon-weighted mean over planes) and its focus: the plane where σx = σy (linear
interpolation at the sign change of σx − σy nearest the sharpest plane; the sharpest plane itself
for a PSF without astigmatism). The windows are then resampled (cubic) onto a common grid, the
bead at the centre of the middle pixel and its focus on the middle plane, each plane normalised to
sum to 1, and averaged over beads.

**Convention.** z = 0 is the beads' focus (σx = σy, the midpoint between the x and y foci of an
astigmatic PSF, as :class:`~live_decode.config.AstigmaticPsfConfig` puts it); the averaged stack
keeps as many planes as every bead has on both sides of its focus, 2m + 1 planes at
``(k − m)·z_step_nm``, which is the z-stack layout :meth:`SplinePSF.from_zstack` reads. Coordinates
follow DESIGN.md §4 (x the column, pixel j covers [j, j + 1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import cKDTree

from live_decode.calibration.spots import fit_gaussians
from live_decode.errors import CalibrationError

F64 = npt.NDArray[np.float64]

MIN_PLANES = 9
"""Planes a stack needs at least: the focus, and enough planes either side to fit σ(z)."""
MIN_HALF_PLANES = 3
"""Planes the averaged stack needs on each side of the focus (the spline needs >= 4 in all)."""
DETECT_SNR = 10.0
"""A bead is a maximum of the max-projection this many robust noise σ above its median ..."""
DETECT_FRACTION = 0.1
"""... and at least this fraction of the brightest bead's height (dim debris is not a bead)."""
FEW_BEADS = 3
FOCUS_SPREAD_NM = 300.0
"""Beads whose focus lies further than this from the median bead's are left out (another
surface, or a mis-fit)."""
OUTLIER_RATIO = 4.0
"""A bead is left out when it differs from the median bead by more than this × the typical
bead (squared distance of the normalised stacks): aggregates, debris, beads on another surface."""


@dataclass(frozen=True)
class BeadStack:
    """The averaged PSF of a bead stack, and what each bead contributed.

    Attributes
    ----------
    psf : (2m+1, K, K) float
        Averaged PSF; each plane sums to 1; the beads' position is the centre of the middle
        pixel, their focus the middle plane.
    z_nm : (2m+1,)
        z of each plane of ``psf``, 0 at the focus.
    sigma_x_px, sigma_y_px : (2m+1,)
        Elliptical-Gaussian fit of each plane of ``psf`` (NaN where the fit failed).
    z_step_nm : float
    photons : float
        Mean photons of one bead per plane (scale of the fits and residuals).
    rois : (B, Z, K, K)
        Each bead's window on every plane of the input stack, photons (background not removed).
    background : (B, Z)
        Background under each window, photons/px (median of its border pixels).
    xy_px : (B, 2)
        Each bead's x, y inside its window (window px, corner origin).
    focus_plane : (B,)
        Fractional input plane of each bead's focus.
    origin_px : (B, 2)
        Frame row, column of each window's top-left pixel.
    warnings : list[str]
    """

    psf: F64
    z_nm: F64
    sigma_x_px: F64
    sigma_y_px: F64
    z_step_nm: float
    photons: float
    rois: F64
    background: F64
    xy_px: F64
    focus_plane: F64
    origin_px: npt.NDArray[np.int64]
    warnings: list[str] = field(default_factory=list)

    @property
    def n_beads(self) -> int:
        return int(self.rois.shape[0])

    @property
    def roi_px(self) -> int:
        return int(self.psf.shape[-1])

    @property
    def z_range_nm(self) -> tuple[float, float]:
        return float(self.z_nm[0]), float(self.z_nm[-1])


def read_stack(path: Path) -> npt.NDArray[np.float64]:
    """(Z, H, W) ADU of a bead z-stack TIFF (any extra axes of size 1 dropped)."""
    import tifffile

    if not Path(path).is_file():
        raise CalibrationError(f"{path}: bead stack not found; check --beads")
    try:
        data = np.asarray(tifffile.imread(path), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{path}: cannot read the bead stack as a TIFF ({exc})") from None
    data = np.squeeze(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise CalibrationError(
            f"{path}: a bead stack is one z series (Z, H, W), got shape {data.shape}; save one "
            "channel and one position per file"
        )
    return data


def check_stack(stack: F64, z_step_nm: float | None, source: str) -> float:
    """The z step, or CalibrationError saying what to supply."""
    if z_step_nm is None:
        raise CalibrationError(
            f"{source}: the bead stack's z step is needed: pass --z-step-nm (the stage move "
            "between frames, nm, e.g. 50)"
        )
    if not (math.isfinite(z_step_nm) and z_step_nm > 0):
        raise CalibrationError(f"{source}: --z-step-nm must be a positive number, got {z_step_nm}")
    if stack.shape[0] < MIN_PLANES:
        raise CalibrationError(
            f"{source}: {stack.shape[0]} plane(s); a bead z-stack needs at least {MIN_PLANES} "
            "planes through the focus (e.g. 31 planes 50 nm apart for ±750 nm)"
        )
    if not np.all(np.isfinite(stack)):
        raise CalibrationError(f"{source}: the bead stack holds NaN or inf values")
    return float(z_step_nm)


def find_beads(photons: F64, roi_px: int) -> tuple[npt.NDArray[np.int64], int]:
    """Rows, columns (B, 2) of bright, isolated beads whose K×K window lies in the frame, and the
    number of maxima found in all (isolated or not).

    Maxima of the max − min projection (each plane smoothed by a 1-px Gaussian; what does not
    change with z — hot pixels, a static background — drops out) above :data:`DETECT_SNR` robust
    σ and :data:`DETECT_FRACTION` of the brightest; a bead is isolated when no other maximum lies
    within K px (rows and columns), so windows do not share light.
    """
    smooth = ndimage.gaussian_filter(photons, sigma=(0, 1.0, 1.0), mode="nearest")
    proj = smooth.max(axis=0) - smooth.min(axis=0)
    med = float(np.median(proj))
    noise = max(float(np.median(np.abs(proj - med))) / 0.6745, 1e-12)
    peaks = proj == ndimage.maximum_filter(proj, size=5, mode="nearest")
    peaks &= proj > med + DETECT_SNR * noise
    points = np.argwhere(peaks)
    if len(points) == 0:
        return np.zeros((0, 2), dtype=np.int64), 0
    height = proj[points[:, 0], points[:, 1]] - med
    points = points[height >= DETECT_FRACTION * height.max()]
    tree = cKDTree(points.astype(np.float64))
    near = tree.query_pairs(r=roi_px - 0.5, p=np.inf, output_type="ndarray")
    alone = np.ones(len(points), dtype=bool)
    alone[near.ravel()] = False
    h, (rows, cols) = roi_px // 2, photons.shape[1:]
    r, c = points[:, 0], points[:, 1]
    inside = (r >= h) & (r < rows - h) & (c >= h) & (c < cols - h)
    return points[alone & inside].astype(np.int64), len(points)


def cut_rois(photons: F64, centres: npt.NDArray[np.int64], roi_px: int) -> F64:
    """(B, Z, K, K) windows of ``photons`` (Z, H, W) centred on each pixel of ``centres``."""
    offs = np.arange(roi_px) - roi_px // 2
    rows = centres[:, 0, None, None] + offs[None, :, None]
    cols = centres[:, 1, None, None] + offs[None, None, :]
    return np.asarray(photons[:, rows, cols].transpose(1, 0, 2, 3))


def border_background(rois: F64) -> F64:
    """(B, Z) median of each window's outermost ring of pixels."""
    ring = np.concatenate(
        [rois[..., 0, :], rois[..., -1, :], rois[..., 1:-1, 0], rois[..., 1:-1, -1]], axis=-1
    )
    return np.asarray(np.median(ring, axis=-1))


def focus_plane(sx: F64, sy: F64, ok: npt.NDArray[np.bool_]) -> F64:
    """(B,) fractional plane of each bead's focus from its per-plane σ (B, Z).

    The σx = σy crossing (linear interpolation) nearest the plane of smallest σx·σy; without a
    crossing, the smallest σx·σy refined by a parabola through its neighbours.
    """
    area = np.where(ok, sx * sy, np.inf)
    sharp = np.argmin(area, axis=1)
    diff = np.where(ok, sx - sy, np.nan)
    b, z = diff.shape
    out = np.empty(b)
    for i in range(b):  # a few beads: the per-bead logic is clearer as a loop
        d = diff[i]
        k = np.nonzero((d[:-1] * d[1:] <= 0) & np.isfinite(d[:-1]) & np.isfinite(d[1:]))[0]
        if len(k):
            j = k[np.argmin(np.abs(k + 0.5 - sharp[i]))]
            step = d[j] - d[j + 1]
            out[i] = j + (d[j] / step if step != 0 else 0.5)
            continue
        j = int(np.clip(sharp[i], 1, z - 2))
        a0, a1, a2 = area[i, j - 1 : j + 2]
        curv = a0 - 2 * a1 + a2
        out[i] = j + (0.5 * (a0 - a2) / curv if np.isfinite(curv) and curv > 0 else 0.0)
    return out


def _bead_xy(p: F64, ok: npt.NDArray[np.bool_]) -> F64:
    """(B, 2) x, y of each bead: its per-plane fits (B, Z, 6) weighted by N / (σx² + σy²)."""
    w = np.where(ok, p[..., 2] / (p[..., 4] ** 2 + p[..., 5] ** 2), 0.0)
    w_sum = np.maximum(w.sum(axis=1), 1e-12)
    return np.stack([(w * p[..., 0]).sum(1) / w_sum, (w * p[..., 1]).sum(1) / w_sum], axis=1)


def _aligned(signal: F64, xy: F64, focus: F64, half_planes: int) -> F64:
    """(B, 2m+1, K, K): each bead's signal resampled onto the common grid (cubic)."""
    b, _, k, _ = signal.shape
    h = k // 2
    grid_z, grid_y, grid_x = np.meshgrid(
        np.arange(-half_planes, half_planes + 1), np.arange(k) - h, np.arange(k) - h, indexing="ij"
    )
    out = np.empty((b, 2 * half_planes + 1, k, k))
    for i in range(b):
        # Array index of a pixel centre is position − 0.5 (pixel j covers [j, j + 1)).
        coords = np.stack(
            [focus[i] + grid_z, xy[i, 1] - 0.5 + grid_y, xy[i, 0] - 0.5 + grid_x]
        ).astype(np.float64)
        out[i] = ndimage.map_coordinates(signal[i], coords, order=3, mode="nearest")
    return out


def _half_planes(focus: F64, z: int, step: float, source: str, warnings: list[str]) -> int:
    """Planes m the averaged stack keeps either side of the focus: as many as every bead has."""
    half = math.floor(min(focus.min(), z - 1 - focus.max()) + 1e-6)
    if half < MIN_HALF_PLANES:
        raise CalibrationError(
            f"{source}: the beads' focus lies at plane(s) {np.round(focus, 1).tolist()} of "
            f"{z}: record at least {MIN_HALF_PLANES} planes on each side of focus (centre the "
            "stack on the focus)"
        )
    if 4 * (z - 2 * half - 1) > z:
        warnings.append(
            f"{source}: {z - 2 * half - 1} of {z} planes lie beyond the range all beads share "
            f"either side of their focus (foci at planes {np.round(focus, 1).tolist()}); the PSF "
            f"covers ±{half * step:.0f} nm — centre the stack on the focus to use them all"
        )
    return int(half)


def _normalised(aligned: F64, source: str) -> F64:
    """(B, Z', K, K) aligned beads with every plane scaled to sum to 1."""
    sums = aligned.sum(axis=(2, 3), keepdims=True)
    if np.any(sums <= 0):
        raise CalibrationError(
            f"{source}: a bead plane holds no light above the background; check the camera "
            "baseline and that the beads are in the field on every plane"
        )
    return np.asarray(aligned / sums, dtype=np.float64)


def consistent_beads(norm: F64) -> npt.NDArray[np.bool_]:
    """(B,) beads whose normalised stack (B, Z', K, K) is like the others': its squared distance
    to the median stack at most :data:`OUTLIER_RATIO` × the median distance (with >= 3 beads)."""
    if len(norm) < FEW_BEADS:
        return np.ones(len(norm), dtype=bool)
    median = np.median(norm, axis=0)
    dist = ((norm - median) ** 2).sum(axis=(1, 2, 3))
    return np.asarray(dist <= OUTLIER_RATIO * np.median(dist))


def measure_beads(
    adu: F64,
    z_step_nm: float | None,
    *,
    baseline_adu: float | None = None,
    adu_per_photon: float = 1.0,
    roi_px: int = 21,
    source: str = "<bead stack>",
) -> BeadStack:
    """The averaged PSF and σx(z), σy(z) of a bead stack.

    Parameters
    ----------
    adu : (Z, H, W)
        The stack as the camera wrote it (ADU); planes ``z_step_nm`` apart, increasing z.
    baseline_adu, adu_per_photon
        The camera's (the calibration's camera estimate); without a baseline, the stack's 1st
        percentile is taken (the background is fitted per window anyway, so it only sets the
        scale of the photon-weighted fits).
    roi_px
        Window side K (odd): holds the most defocused plane's PSF.

    Raises
    ------
    CalibrationError
        No z step, too few planes, no isolated bead, or the focus too near the stack's ends.
    """
    step = check_stack(adu, z_step_nm, source)
    if roi_px % 2 == 0 or roi_px < 7:
        raise CalibrationError(f"the bead window must be odd and >= 7 px, got {roi_px}")
    base = float(np.percentile(adu, 1)) if baseline_adu is None else float(baseline_adu)
    photons = (adu - base) / adu_per_photon
    centres, n_maxima = find_beads(photons, roi_px)
    if len(centres) == 0:
        raise CalibrationError(
            f"{source}: no isolated bead found ({n_maxima} bright maxima, none with its "
            f"{roi_px}×{roi_px} px window inside the frame and free of other beads): record "
            f"sparse bright beads (e.g. 100 nm TetraSpeck) at least {roi_px} px apart"
        )
    warnings: list[str] = []
    if len(centres) < FEW_BEADS:
        warnings.append(
            f"only {len(centres)} bead(s) in {source}: the PSF averages little noise away; "
            "record more beads per field"
        )
    rois = cut_rois(photons, centres, roi_px)
    bg = border_background(rois)
    b, z, k, _ = rois.shape
    p, ok = fit_gaussians(rois.reshape(b * z, k, k))
    p, ok = p.reshape(b, z, 6), ok.reshape(b, z)
    xy = _bead_xy(p, ok)
    focus = focus_plane(p[..., 4], p[..., 5], ok)
    usable = (ok.mean(axis=1) >= 0.5) & (np.abs(focus - np.median(focus)) * step <= FOCUS_SPREAD_NM)
    if not usable.any():
        raise CalibrationError(
            f"{source}: no bead could be fitted on most planes with a common focus; record "
            f"brighter beads, or a wider window than {roi_px} px for the defocused planes"
        )
    if not usable.all():
        at = (centres[~usable][:, ::-1] + 0.5).tolist()
        warnings.append(
            f"{source}: {int((~usable).sum())} spot(s) at x, y {at} px left out: no Gaussian fit "
            f"on most planes, or a focus more than {FOCUS_SPREAD_NM:.0f} nm from the others'"
        )
        rois, bg, p, ok, xy, focus = (a[usable] for a in (rois, bg, p, ok, xy, focus))
        centres = centres[usable]
    signal = rois - bg[..., None, None]
    first: list[str] = []
    half = _half_planes(focus, z, step, source, first)
    norm = _normalised(_aligned(signal, xy, focus, half), source)
    keep = consistent_beads(norm)
    if not keep.all():
        at = (centres[~keep][:, ::-1] + 0.5).tolist()
        warnings.append(
            f"{source}: {int((~keep).sum())} bead(s) at x, y {at} px differ in shape from the "
            "others (aggregates, debris, or on another surface) and are left out"
        )
        rois, bg, signal, xy, focus = (a[keep] for a in (rois, bg, signal, xy, focus))
        centres = centres[keep]
        half = _half_planes(focus, z, step, source, warnings)
        norm = _normalised(_aligned(signal, xy, focus, half), source)
    else:
        warnings += first
    psf = norm.mean(axis=0)
    psf /= psf.sum(axis=(1, 2), keepdims=True)
    bead_photons = float(np.median(signal.sum(axis=(2, 3))))
    fit, fit_ok = fit_gaussians(psf * max(bead_photons, 100.0))
    sx = np.where(fit_ok, fit[:, 4], np.nan)
    sy = np.where(fit_ok, fit[:, 5], np.nan)
    return BeadStack(
        psf=psf,
        z_nm=(np.arange(2 * half + 1, dtype=np.float64) - half) * step,
        sigma_x_px=sx,
        sigma_y_px=sy,
        z_step_nm=step,
        photons=bead_photons,
        rois=rois,
        background=bg,
        xy_px=xy,
        focus_plane=focus,
        origin_px=centres - roi_px // 2,
        warnings=warnings,
    )


def flipped(stack: BeadStack) -> BeadStack:
    """The same beads with z reversed (plane index increasing = z decreasing)."""
    z = stack.rois.shape[1]
    return BeadStack(
        psf=stack.psf[::-1].copy(),
        z_nm=stack.z_nm,
        sigma_x_px=stack.sigma_x_px[::-1].copy(),
        sigma_y_px=stack.sigma_y_px[::-1].copy(),
        z_step_nm=stack.z_step_nm,
        photons=stack.photons,
        rois=stack.rois[:, ::-1].copy(),
        background=stack.background[:, ::-1].copy(),
        xy_px=stack.xy_px,
        focus_plane=(z - 1) - stack.focus_plane,
        origin_px=stack.origin_px,
        warnings=list(stack.warnings),
    )


def summary(stack: BeadStack, pixel_size_nm: float) -> dict[str, Any]:
    """The stack's figures for ``calibration.json``."""
    return {
        "beads": stack.n_beads,
        "z_step_nm": stack.z_step_nm,
        "z_nm": stack.z_nm,
        "sigma_x_nm": stack.sigma_x_px * pixel_size_nm,
        "sigma_y_nm": stack.sigma_y_px * pixel_size_nm,
        "bead_photons_per_plane": stack.photons,
        "bead_focus_plane": stack.focus_plane,
        "bead_xy_px": stack.xy_px + stack.origin_px[:, ::-1],
        "roi_px": stack.roi_px,
    }
