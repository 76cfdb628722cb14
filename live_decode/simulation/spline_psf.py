"""Cubic-spline (tricubic) PSF, from a z-stack of voxels or a SMAP ``*_3dcal.mat`` calibration.

The PSF is a piecewise tricubic polynomial on a voxel grid: voxel (k, i, j) of the grid is the
pixel-integrated PSF, in fractions of the emitter's photons, of the camera pixel whose centre lies
``(j - ref_x, i - ref_y)`` px from the emitter, for an emitter at ``z = (k - ref_z) * z_step_nm``.
Between voxels the cell (k, i, j) holds 64 power-basis coefficients, stored as
``coeff[k, i, j, a, b, c]``, the factor of ``tz**a * ty**b * tx**c`` where t is the fractional
position inside the cell (0 at voxel k, i, j; 1 at the next voxel).

Coordinates follow DESIGN.md §4: x is the column, y the row, in px; pixel j covers [j, j+1) so its
centre is j + 0.5; z in nm. Outside the grid laterally the PSF is 0; outside the calibrated z range
it is clamped to the nearest end (so its z derivative is 0 there).

SMAP convention (``SXY.cspline`` of a ``*_3dcal.mat``, written by SMAP's ``calibrate_splines``):
``coeff`` is (N1, N2, Nz, 64) in MATLAB index order, N1 along the image rows (our y, DECODE's "x"),
N2 along the columns (our x); entry ``16*a + 4*b + c`` is the factor of ``tz**a * t2**b * t1**c``.
``x0`` is the 1-based index of the PSF centre voxel (both lateral axes): ``ref_x = ref_y = x0 - 1``.
SMAP's fitter evaluates z as a 0-based voxel coordinate w with ``z_nm = (w - z0) * dz``, so
``ref_z = z0`` (not ``z0 - 1``); DECODE reads these files the same way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from torch import Tensor

from live_decode.config import SplinePsfConfig
from live_decode.errors import CalibrationError

_ZSTACK_SUFFIXES = (".npy", ".tif", ".tiff")
_MAX_GATHER_ELEMENTS = 1 << 24  # per chunk of emitters: bounds the (n, K, K, 64) gather to ~64 MB
_SMAP_FIELDS = ("coeff", "dz", "x0", "z0")


class SplinePSF:
    """Tricubic-spline PSF; implements :class:`live_decode.simulation.psf.PSF`.

    Parameters
    ----------
    coeff : (Nz, Ny, Nx, 4, 4, 4) float tensor
        Power-basis coefficients per cell (see the module docstring).
    ref_voxel : (x, y, z)
        Voxel coordinates (0-based, may be fractional) of the emitter position and of z = 0.
    z_step_nm : float
        Distance between voxel planes.
    roi_px : int
        Side of the square window each emitter is rendered into.
    """

    def __init__(
        self,
        coeff: Tensor,
        ref_voxel: tuple[float, float, float],
        z_step_nm: float,
        roi_px: int,
    ) -> None:
        if coeff.ndim != 6 or tuple(coeff.shape[3:]) != (4, 4, 4):
            raise ValueError(f"coeff must be (Nz, Ny, Nx, 4, 4, 4), got {tuple(coeff.shape)}")
        self.coeff = coeff.detach()
        self.ref_voxel = ref_voxel
        self.z_step_nm = float(z_step_nm)
        self.roi_px = roi_px
        self._cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    @property
    def z_range_nm(self) -> tuple[float, float]:
        """(min, max) z covered by the calibration, nm."""
        n_cells = self.coeff.shape[0]
        ref_z = self.ref_voxel[2]
        return (-ref_z * self.z_step_nm, (n_cells - ref_z) * self.z_step_nm)

    # ------------------------------------------------------------------ evaluation
    def roi(self, xyz: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-emitter windows.

        Parameters
        ----------
        xyz : (N, 3) float
            x, y in px (pixel j covers [j, j+1)); z in nm.

        Returns
        -------
        values : (N, K, K) float
            Fraction of the emitter's photons in each pixel of the window; differentiable in xyz.
        row0, col0 : (N,) int64
            Row and column of the window's top-left pixel in the frame.
        """
        k = self.roi_px
        col0 = torch.floor(xyz[:, 0].detach()).long() - k // 2
        row0 = torch.floor(xyz[:, 1].detach()).long() - k // 2
        n = xyz.shape[0]
        chunk = max(1, _MAX_GATHER_ELEMENTS // (k * k * 64))
        if n <= chunk:
            return self._values(xyz, row0, col0), row0, col0
        parts = [
            self._values(xyz[s : s + chunk], row0[s : s + chunk], col0[s : s + chunk])
            for s in range(0, n, chunk)
        ]
        return torch.cat(parts), row0, col0

    def _values(self, xyz: Tensor, row0: Tensor, col0: Tensor) -> Tensor:
        """(n, K, K) spline values for one chunk of emitters."""
        coeff = self._coeff_on(xyz.device, xyz.dtype)
        nz, ny, nx = coeff.shape[:3]
        k = self.roi_px
        ref_x, ref_y, ref_z = self.ref_voxel
        # Voxel coordinate of the centre of the window's first pixel; same fraction for all pixels.
        u = ref_x + (col0.to(xyz.dtype) + 0.5) - xyz[:, 0]
        v = ref_y + (row0.to(xyz.dtype) + 0.5) - xyz[:, 1]
        w = (ref_z + xyz[:, 2] / self.z_step_nm).clamp(0.0, float(nz))
        jx = torch.floor(u.detach()).long()
        iy = torch.floor(v.detach()).long()
        kz = torch.floor(w.detach()).long().clamp(max=nz - 1)
        basis = _tensor_basis(w - kz, v - iy, u - jx)  # (n, 64)

        ar = torch.arange(k, device=xyz.device)
        rows = iy[:, None] + ar  # (n, K)
        cols = jx[:, None] + ar
        inside = ((rows >= 0) & (rows < ny))[:, :, None] & ((cols >= 0) & (cols < nx))[:, None, :]
        cell = (
            kz[:, None, None] * (ny * nx)
            + rows.clamp(0, ny - 1)[:, :, None] * nx
            + cols.clamp(0, nx - 1)[:, None, :]
        )
        gathered = coeff.view(nz * ny * nx, 64)[cell]  # (n, K, K, 64)
        values = torch.einsum("nrcm,nm->nrc", gathered, basis)
        return values * inside.to(values.dtype)

    def _coeff_on(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = self.coeff.to(device=device, dtype=dtype).contiguous()
        return self._cache[key]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_zstack(
        cls,
        stack: np.ndarray[Any, Any],
        z_step_nm: float,
        roi_px: int,
        *,
        normalize: bool = True,
        source: str = "<z-stack array>",
    ) -> SplinePSF:
        """Interpolating tricubic spline through a z-stack of voxels.

        Parameters
        ----------
        stack : (Z, Y, X) float
            The PSF sampled at pixel centres (pixel-integrated, background removed), the emitter at
            the stack's centre: voxel coordinates ((X-1)/2, (Y-1)/2, (Z-1)/2). Z, Y, X >= 4.
        z_step_nm : float
            Distance between planes; the middle plane is z = 0.
        roi_px : int
            Render window side.
        normalize : bool
            Scale each plane to sum to 1 (the stack then need not be in photons).
        source : str
            Name used in error messages (the file the stack came from).

        Raises
        ------
        CalibrationError
            If the stack is not 3-D, too small, not finite, has an empty plane, or z_step is bad.
        """
        data = _checked_stack(stack, z_step_nm, source)
        if normalize:
            data = data / data.sum(axis=(1, 2), keepdims=True)
        coeff = torch.from_numpy(tricubic_coefficients(data)).to(torch.float32)
        nz, ny, nx = data.shape
        ref = ((nx - 1) / 2.0, (ny - 1) / 2.0, (nz - 1) / 2.0)
        return cls(coeff, ref, z_step_nm, roi_px)

    @classmethod
    def from_smap_mat(cls, path: str | Path, roi_px: int) -> SplinePSF:
        """Load the cubic spline of a SMAP ``*_3dcal.mat`` (``SXY.cspline``); see module docstring.

        Raises
        ------
        CalibrationError
            If the file is missing, unreadable, or lacks ``SXY.cspline.{coeff, dz, x0, z0}`` of the
            right shape; the message names the file and the problem.
        """
        path = Path(path)
        cspline = _read_smap_cspline(path)
        coeff, dz, x0, z0 = _smap_fields(cspline, path)
        n1, n2, nz = coeff.shape[:3]
        # SMAP (row, col, z, [a, b_col, c_row]) -> ours (z, row, col, [a, b_row, c_col]).
        ours = coeff.reshape(n1, n2, nz, 4, 4, 4).transpose(2, 0, 1, 3, 5, 4)
        tensor = torch.from_numpy(np.ascontiguousarray(ours, dtype=np.float32))
        return cls(tensor, (x0 - 1.0, x0 - 1.0, z0), dz, roi_px)

    @classmethod
    def from_config(cls, cfg: SplinePsfConfig) -> SplinePSF:
        """The spline a config names: ``.mat`` (SMAP) or ``.npy``/``.tif``/``.tiff`` (z-stack)."""
        path = cfg.calibration
        suffix = path.suffix.lower()
        if suffix == ".mat":
            psf = cls.from_smap_mat(path, cfg.roi_px)
            if cfg.z_step_nm is not None and not math.isclose(cfg.z_step_nm, psf.z_step_nm):
                raise CalibrationError(
                    f"{path}: psf.z_step_nm = {cfg.z_step_nm} conflicts with the file's "
                    f"dz = {psf.z_step_nm} nm; remove psf.z_step_nm for a .mat calibration"
                )
            return psf
        if suffix in _ZSTACK_SUFFIXES:
            if cfg.z_step_nm is None:
                raise CalibrationError(
                    f"{path}: a z-stack calibration needs its plane spacing; set psf.z_step_nm"
                )
            return cls.from_zstack(_read_zstack(path), cfg.z_step_nm, cfg.roi_px, source=str(path))
        raise CalibrationError(
            f"{path}: unknown calibration type '{suffix}'; use a SMAP *_3dcal.mat or a "
            f"(Z, Y, X) z-stack saved as .npy, .tif or .tiff"
        )


# ---------------------------------------------------------------------- spline maths
def _power_basis(t: Tensor) -> Tensor:
    """(n, 4): 1, t, t², t³."""
    return torch.stack([torch.ones_like(t), t, t * t, t * t * t], dim=-1)


def _tensor_basis(tz: Tensor, ty: Tensor, tx: Tensor) -> Tensor:
    """(n, 64) products tz**a * ty**b * tx**c at index 16a + 4b + c."""
    pz, py, px = _power_basis(tz), _power_basis(ty), _power_basis(tx)
    return (pz[:, :, None, None] * py[:, None, :, None] * px[:, None, None, :]).reshape(-1, 64)


def tricubic_coefficients(stack: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Power-basis coefficients of the not-a-knot tricubic spline interpolating ``stack``.

    The tensor-product interpolant is the 1-D interpolating spline applied along each axis in
    turn (the 1-D map from samples to cell polynomials is linear).

    Parameters
    ----------
    stack : (Z, Y, X) float
        Samples at integer voxel coordinates; each axis needs >= 4 samples.

    Returns
    -------
    (Z-1, Y-1, X-1, 4, 4, 4) float64
        ``[k, i, j, a, b, c]``: factor of ``tz**a * ty**b * tx**c`` in cell (k, i, j).
    """
    # CubicSpline(...).c is (4, cells, *other axes), highest power first; flip to ascending.
    cx = CubicSpline(np.arange(stack.shape[2]), stack, axis=2).c[::-1]  # (px, jx, Z, Y)
    cy = CubicSpline(np.arange(stack.shape[1]), cx, axis=3).c[::-1]  # (py, iy, px, jx, Z)
    cz = CubicSpline(np.arange(stack.shape[0]), cy, axis=4).c[::-1]  # (pz, kz, py, iy, px, jx)
    return np.ascontiguousarray(cz.transpose(1, 3, 5, 0, 2, 4))


# ---------------------------------------------------------------------- file reading
def _checked_stack(
    stack: np.ndarray[Any, Any], z_step_nm: float, source: str
) -> np.ndarray[Any, Any]:
    """The stack as float64 (Z, Y, X), or CalibrationError saying what is wrong."""
    data = np.asarray(stack, dtype=np.float64)
    if data.ndim != 3 or min(data.shape) < 4:
        raise CalibrationError(
            f"{source}: a z-stack must be a 3-D (Z, Y, X) array with at least 4 voxels per axis, "
            f"got shape {data.shape}"
        )
    if not np.all(np.isfinite(data)):
        raise CalibrationError(f"{source}: the z-stack holds NaN or inf values; remove them")
    if not (math.isfinite(z_step_nm) and z_step_nm > 0):
        raise CalibrationError(f"{source}: z_step_nm must be a positive number, got {z_step_nm}")
    if np.any(data.sum(axis=(1, 2)) <= 0):
        raise CalibrationError(
            f"{source}: a z-stack plane sums to <= 0; subtract the background so each plane "
            f"holds the PSF, not the offset"
        )
    return data


def _read_zstack(path: Path) -> np.ndarray[Any, Any]:
    """(Z, Y, X) array from a .npy or .tif/.tiff file."""
    if not path.is_file():
        raise CalibrationError(f"{path}: calibration file not found; check psf.calibration")
    try:
        if path.suffix.lower() == ".npy":
            return np.asarray(np.load(path, allow_pickle=False))
        import tifffile

        return np.asarray(tifffile.imread(path))
    except (OSError, ValueError) as exc:
        raise CalibrationError(
            f"{path}: cannot read the z-stack ({exc}); save it as a (Z, Y, X) .npy or .tif"
        ) from None


def _read_smap_cspline(path: Path) -> Any:
    """The ``SXY.cspline`` struct of a SMAP calibration file."""
    from scipy.io import loadmat

    if not path.is_file():
        raise CalibrationError(f"{path}: calibration file not found; check psf.calibration")
    try:
        mat = loadmat(path, squeeze_me=True, struct_as_record=False)
    except NotImplementedError:
        raise CalibrationError(
            f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; re-save the calibration "
            f"in MATLAB with save(file, 'SXY', '-v7')"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise CalibrationError(
            f"{path}: not a readable MATLAB .mat file ({exc}); expected a SMAP *_3dcal.mat"
        ) from None
    if "SXY" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise CalibrationError(
            f"{path}: no variable 'SXY' (found {found}); expected a SMAP *_3dcal.mat written by "
            f"SMAP's 3D spline calibration (calibrate3DsplinePSF)"
        )
    sxy = mat["SXY"]
    if isinstance(sxy, np.ndarray):
        if sxy.size != 1:
            raise CalibrationError(
                f"{path}: SXY holds {sxy.size} calibrations (a spatially resolved or "
                f"multi-channel calibration); export a single calibration"
            )
        sxy = sxy.item()
    cspline = getattr(sxy, "cspline", None)
    if cspline is None:
        raise CalibrationError(
            f"{path}: SXY has no 'cspline' field (no cubic-spline model); redo the calibration "
            f"in SMAP with the cspline PSF model"
        )
    return cspline


def _smap_fields(cspline: Any, path: Path) -> tuple[np.ndarray[Any, Any], float, float, float]:
    """(coeff (N1, N2, Nz, 64) float64, dz nm, x0, z0), validated."""
    missing = [f for f in _SMAP_FIELDS if not hasattr(cspline, f)]
    if missing:
        raise CalibrationError(
            f"{path}: SXY.cspline lacks field(s) {missing}; expected coeff, dz, x0 and z0 as "
            f"written by SMAP's spline calibration"
        )
    coeff = cspline.coeff
    if isinstance(coeff, np.ndarray) and coeff.dtype == object:  # a MATLAB cell
        if coeff.size != 1:
            raise CalibrationError(
                f"{path}: SXY.cspline.coeff is a cell of {coeff.size} channels; live_decode "
                f"needs a single-channel calibration"
            )
        coeff = coeff.item()
    coeff = np.asarray(coeff, dtype=np.float64)
    if coeff.ndim != 4 or coeff.shape[3] != 64 or min(coeff.shape[:3]) < 1:
        raise CalibrationError(
            f"{path}: SXY.cspline.coeff has shape {coeff.shape}; expected (Nx, Ny, Nz, 64) "
            f"cubic-spline coefficients"
        )
    if not np.all(np.isfinite(coeff)):
        raise CalibrationError(f"{path}: SXY.cspline.coeff holds NaN or inf values")
    scalars = []
    for name in ("dz", "x0", "z0"):
        value = np.asarray(getattr(cspline, name), dtype=np.float64)
        if value.size != 1 or not np.isfinite(value).all():
            raise CalibrationError(f"{path}: SXY.cspline.{name} must be one finite number")
        scalars.append(float(value.item()))
    dz, x0, z0 = scalars
    if dz <= 0:
        raise CalibrationError(f"{path}: SXY.cspline.dz = {dz}; the z step must be > 0 nm")
    return coeff, dz, x0, z0
