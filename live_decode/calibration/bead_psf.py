"""PSF models of a bead stack: the astigmatic Gaussian fitted to σx(z), σy(z), and the cubic
spline through the averaged stack, each with its residual against the beads themselves.

The residual renders the model at every bead's fitted x, y and z (relative to its own focus) on
every plane of the input stack that the model covers, scales it to the bead's light and
background by linear least squares, and compares with the bead's pixels: ``unexplained`` is
Σ(data − model)² / Σ(data − background)² (0 = the model explains all the bead's light; photon
noise alone leaves ~N_px·var / signal², reported as ``noise_floor``), ``chi2_per_px`` divides the
squared residual by the noise variance (shot noise × the camera's excess-noise factor, plus the
read noise seen in the windows' border pixels): ≈ 1 when the model leaves only noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from scipy.optimize import least_squares

from live_decode.calibration.beads import BeadStack
from live_decode.config import AstigmaticPsfConfig, SplinePsfConfig
from live_decode.errors import CalibrationError
from live_decode.simulation.emitters import Emitters
from live_decode.simulation.psf import PSF, build_psf, render

F64 = npt.NDArray[np.float64]

SPLINE_FILE = "beads_psf.tif"
"""The averaged stack next to ``setup.yaml`` (a (Z, Y, X) float32 z-stack the spline loads)."""


@dataclass(frozen=True)
class AstigmaticFit:
    """The astigmatic model fitted to σx(z), σy(z) (nm)."""

    config: AstigmaticPsfConfig
    rms_relative_error: float
    max_relative_error: float


@dataclass(frozen=True)
class Residual:
    """A model's misfit to the beads, with the windows it was measured on.

    ``bead`` and ``model`` are (n, K, K) photons above the fitted background, for each covered
    (bead, input plane); ``plane`` (n,) is the index into ``BeadStack.z_nm`` nearest its z.
    """

    unexplained: float
    noise_floor: float
    chi2_per_px: float
    unexplained_per_plane: F64
    bead: F64
    model: F64
    plane: npt.NDArray[np.int64]

    def to_dict(self) -> dict[str, object]:
        return {
            "unexplained": self.unexplained,
            "noise_floor": self.noise_floor,
            "chi2_per_px": self.chi2_per_px,
            "unexplained_per_plane": self.unexplained_per_plane,
        }


def astigmatic_sigmas(z_nm: F64, sigma0: float, c: float, d: float) -> tuple[F64, F64]:
    """σx, σy of :class:`~live_decode.simulation.psf.AstigmaticPSF` (same units as sigma0)."""
    return (
        sigma0 * np.sqrt(1.0 + ((z_nm + c) / d) ** 2),
        sigma0 * np.sqrt(1.0 + ((z_nm - c) / d) ** 2),
    )


def _astigmatic_least_squares(z: F64, sx: F64, sy: F64) -> tuple[float, float, float]:
    """σ0, c (signed: x focus at −c), d minimising the relative error of both curves."""

    def resid(q: F64) -> F64:
        mx, my = astigmatic_sigmas(z, q[0], q[1], q[2])
        return np.concatenate([mx / sx - 1.0, my / sy - 1.0])

    c0 = 0.5 * (z[np.argmin(sy)] - z[np.argmin(sx)])
    d0 = max(0.25 * float(np.ptp(z)), 1.0)
    q0 = np.array([min(sx.min(), sy.min()), c0, d0])
    lo, hi = np.array([1e-3, -np.inf, 1e-3]), np.array([np.inf, np.inf, np.inf])
    fit = least_squares(resid, q0, bounds=(lo, hi), x_scale=np.array([q0[0], d0, d0]))
    return float(fit.x[0]), float(fit.x[1]), float(fit.x[2])


def fit_astigmatic(
    z_nm: F64, sigma_x_nm: F64, sigma_y_nm: F64, roi_px: int = 31
) -> tuple[AstigmaticFit, bool]:
    """The :class:`AstigmaticPsfConfig` closest to measured σx(z), σy(z), and whether the x
    focus lay above the y focus (the config has it below: the caller flips the stack's z).

    Raises
    ------
    CalibrationError
        Fewer than 5 planes with both σ measured.
    """
    good = np.isfinite(sigma_x_nm) & np.isfinite(sigma_y_nm)
    if good.sum() < 5:
        raise CalibrationError(
            f"only {int(good.sum())} planes of the averaged bead stack could be fitted with a "
            "Gaussian (need 5): the beads are too dim or the window too small for the defocus"
        )
    z, sx, sy = z_nm[good], sigma_x_nm[good], sigma_y_nm[good]
    s0, c, d = _astigmatic_least_squares(z, sx, sy)
    mx, my = astigmatic_sigmas(z, s0, c, d)
    err = np.abs(np.concatenate([mx / sx, my / sy]) - 1.0)
    cfg = AstigmaticPsfConfig(
        sigma0_nm=round(s0, 2),
        focal_offset_nm=round(abs(c), 2),
        depth_of_field_nm=round(d, 2),
        roi_px=roi_px,
    )
    rms = float(np.sqrt(np.mean(err**2)))
    return AstigmaticFit(cfg, rms, float(err.max())), c < 0


def write_spline(stack: BeadStack, path: Path) -> SplinePsfConfig:
    """Save the averaged PSF as a float32 (Z, Y, X) TIFF; the config that loads it."""
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, stack.psf.astype(np.float32))
    return SplinePsfConfig(calibration=path, z_step_nm=stack.z_step_nm, roi_px=stack.roi_px)


def _covered(
    stack: BeadStack, z_range_nm: tuple[float, float]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], F64]:
    """Bead and input-plane indices (n,) of the planes inside the model's z range, and their z
    relative to each bead's focus, nm."""
    z = stack.rois.shape[1]
    rel = (np.arange(z)[None, :] - stack.focus_plane[:, None]) * stack.z_step_nm
    inside = (rel >= z_range_nm[0] - 1e-6) & (rel <= z_range_nm[1] + 1e-6)
    bead, plane = np.nonzero(inside)
    return bead.astype(np.int64), plane.astype(np.int64), rel[bead, plane]


def render_beads(stack: BeadStack, psf: PSF, bead: npt.NDArray[np.int64], z_nm: F64) -> F64:
    """(n, K, K) the model of one photon at bead ``bead``'s x, y and ``z_nm``, in its window."""
    xyz = np.stack([stack.xy_px[bead, 0], stack.xy_px[bead, 1], z_nm], axis=1)
    k = stack.roi_px
    emitters = Emitters(
        xyz=torch.tensor(xyz, dtype=torch.float64),
        photons=torch.ones(len(bead), dtype=torch.float64),
        frame=torch.arange(len(bead)),
        id=torch.from_numpy(bead),
    )
    with torch.no_grad():
        model = render(psf, emitters, len(bead), (k, k)).numpy()
    return np.asarray(model, dtype=np.float64)


def _read_variance(stack: BeadStack, excess_noise_sq: float) -> float:
    """Photons² of noise beyond the shot noise (read noise): the windows' border pixels' variance
    less F² × their mean (median over windows), at least 1e-3."""
    k = stack.roi_px
    ring = np.concatenate(
        [stack.rois[..., 0, :], stack.rois[..., -1, :], stack.rois[..., 1:-1, 0]], axis=-1
    ).reshape(-1, 3 * k - 2)
    extra = ring.var(axis=1, ddof=1) - excess_noise_sq * ring.mean(axis=1)
    return max(float(np.median(extra)), 1e-3)


def residual(
    stack: BeadStack, psf: PSF, z_range_nm: tuple[float, float], excess_noise_sq: float = 1.0
) -> Residual:
    """How well ``psf`` explains the beads (see the module docstring)."""
    bead, plane, rel = _covered(stack, z_range_nm)
    n, k = len(bead), stack.roi_px
    m = render_beads(stack, psf, bead, rel).reshape(n, -1)
    d = stack.rois[bead, plane].reshape(n, -1)
    # Linear least squares per window: data ≈ a·model + bg.
    m_mean, d_mean = m.mean(1, keepdims=True), d.mean(1, keepdims=True)
    a = ((m - m_mean) * (d - d_mean)).sum(1) / np.maximum(((m - m_mean) ** 2).sum(1), 1e-300)
    bg = d_mean[:, 0] - a * m_mean[:, 0]
    fit = a[:, None] * m + bg[:, None]
    r2 = ((d - fit) ** 2).sum(1)
    signal2 = ((d - bg[:, None]) ** 2).sum(1)
    var = excess_noise_sq * np.maximum(fit, 0.0) + _read_variance(stack, excess_noise_sq)
    half = len(stack.z_nm) // 2
    nearest = np.clip(np.rint(rel / stack.z_step_nm).astype(np.int64) + half, 0, 2 * half)
    num = np.bincount(nearest, r2, minlength=2 * half + 1)
    den = np.bincount(nearest, signal2, minlength=2 * half + 1)
    per_plane = np.full(2 * half + 1, math.nan)
    np.divide(num, den, out=per_plane, where=den > 0)
    return Residual(
        unexplained=float(r2.sum() / signal2.sum()),
        noise_floor=float(var.sum() / signal2.sum()),
        chi2_per_px=float(((d - fit) ** 2 / var).mean()),
        unexplained_per_plane=per_plane,
        bead=(d - bg[:, None]).reshape(n, k, k),
        model=(fit - bg[:, None]).reshape(n, k, k),
        plane=nearest,
    )


def model_psf(cfg: AstigmaticPsfConfig | SplinePsfConfig, pixel_size_nm: float) -> PSF:
    """The project's PSF for a config (the one training and simulation use)."""
    return build_psf(cfg, pixel_size_nm)
