"""SplinePSF: accuracy against the Gaussian it was built from, SMAP .mat layout, bad files.

SMAP layout written here independently of the reader, from SMAP's ``Spline3D_interp`` and its
fitter: ``SXY.cspline.coeff`` is (N1, N2, Nz, 64); N1 runs along image rows (our y), N2 along
columns (our x); entry ``16*a + 4*b + c`` multiplies ``tz**a * t2**b * t1**c``; ``x0`` is the
1-based centre voxel and ``z_nm = (w - z0) * dz`` for the 0-based voxel coordinate w.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import tifffile
import torch
from numpy.polynomial import Polynomial
from scipy.special import erf

from live_decode.config import SplinePsfConfig
from live_decode.errors import CalibrationError
from live_decode.simulation.psf import AstigmaticPSF, build_psf
from live_decode.simulation.spline_psf import SplinePSF

SIGMA0_PX, FOCAL_NM, DEPTH_NM = 1.1, 250.0, 400.0
STACK_PX, Z_STEP_NM, HALF_PLANES = 31, 40.0, 20  # z from −800 to +800 nm
ROI = 15
# Cubic interpolation of a σ = 1.1 px Gaussian sampled every pixel and every 40 nm in z.
SPLINE_ABS_TOL = 1.5e-3  # photon fraction per pixel (peak ≈ 0.1)


def _astigmatic(roi: int) -> AstigmaticPSF:
    return AstigmaticPSF(SIGMA0_PX, FOCAL_NM, DEPTH_NM, roi)


def _gaussian_stack() -> np.ndarray[Any, Any]:
    """(41, 31, 31) astigmatic Gaussian z-stack, emitter at the centre of the middle voxel."""
    z = torch.arange(-HALF_PLANES, HALF_PLANES + 1, dtype=torch.float64) * Z_STEP_NM
    centre = torch.full_like(z, STACK_PX / 2)
    return _astigmatic(STACK_PX).roi(torch.stack([centre, centre, z], dim=1))[0].numpy()


@pytest.fixture(scope="module")
def stack() -> np.ndarray[Any, Any]:
    return _gaussian_stack()


@pytest.fixture(scope="module")
def spline(stack: np.ndarray[Any, Any]) -> SplinePSF:
    return SplinePSF.from_zstack(stack, Z_STEP_NM, ROI)


OFF_GRID = [
    (20.5, 20.5, 0.0),
    (20.13, 20.77, 13.0),
    (7.91, 33.02, -371.0),
    (12.49, 3.01, 433.3),
    (40.99, 8.5, -777.0),
    (5.0, 5.0, 651.9),
]


@pytest.mark.parametrize("xyz", OFF_GRID)
def test_spline_reproduces_gaussian_off_grid(spline: SplinePSF, xyz: tuple[float, ...]) -> None:
    pos = torch.tensor([xyz], dtype=torch.float64)
    expected, row0, col0 = _astigmatic(ROI).roi(pos)
    got, srow0, scol0 = spline.roi(pos)
    assert (srow0 == row0).all() and (scol0 == col0).all()
    assert (got - expected).abs().max().item() < SPLINE_ABS_TOL


def test_spline_gradients_match_finite_differences(spline: SplinePSF) -> None:
    xyz = torch.tensor([[20.31, 20.62, -143.0]], dtype=torch.float64, requires_grad=True)
    weights = torch.rand(ROI, ROI, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def objective(p: torch.Tensor) -> torch.Tensor:
        return (spline.roi(p)[0][0] * weights).sum()

    (grad,) = torch.autograd.grad(objective(xyz), xyz)
    for axis, step in [(0, 1e-4), (1, 1e-4), (2, 1e-2)]:
        delta = torch.zeros(1, 3, dtype=torch.float64)
        delta[0, axis] = step
        with torch.no_grad():
            fd = (objective(xyz + delta) - objective(xyz - delta)) / (2 * step)
        assert grad[0, axis].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)


def test_z_range_and_clamping(spline: SplinePSF) -> None:
    assert spline.z_range_nm == pytest.approx((-800.0, 800.0))
    beyond = torch.tensor([[20.5, 20.5, 2000.0], [20.5, 20.5, 800.0]], dtype=torch.float64)
    values = spline.roi(beyond)[0]
    torch.testing.assert_close(values[0], values[1])


def test_float32_and_many_emitters_in_chunks(spline: SplinePSF) -> None:
    """More emitters than one gather chunk: same values as one at a time, float32 in and out."""
    n = 2 * (1 << 24) // (ROI * ROI * 64) + 3
    gen = torch.Generator().manual_seed(1)
    xyz = torch.rand(n, 3, generator=gen) * torch.tensor([60.0, 60.0, 1200.0]) - torch.tensor(
        [0.0, 0.0, 600.0]
    )
    values = spline.roi(xyz)[0]
    assert values.dtype == torch.float32 and values.shape == (n, ROI, ROI)
    for i in (0, n // 2, n - 1):
        torch.testing.assert_close(values[i], spline.roi(xyz[i : i + 1])[0][0])


# ---------------------------------------------------------------------- SMAP .mat layout
def _save_smap(path: Path, coeff: Any, dz: float, x0: Any, z0: float, **extra: Any) -> Path:
    """Write ``SXY.cspline`` the way SMAP's 3D calibration stores it (MATLAB v5 .mat)."""
    cspline = {"coeff": coeff, "dz": dz, "x0": x0, "z0": z0}
    sxy = {"cspline": cspline, "Xrange": np.array([-np.inf, np.inf]), "EMon": False, **extra}
    scipy.io.savemat(path, {"SXY": sxy, "parameters": {"dz": dz}})
    return path


def _taylor(poly: Polynomial, n_cells: int) -> np.ndarray[Any, Any]:
    """(n_cells, 4): coefficients of poly(i + t) in powers of t, per cell i."""
    out = np.zeros((n_cells, 4))
    for i in range(n_cells):
        coef = poly(Polynomial([i, 1.0])).coef
        out[i, : len(coef)] = coef
    return out


def test_smap_axes_and_reference(tmp_path: Path) -> None:
    """A separable cubic f = P(dim1) Q(dim2) R(z), different along each axis, in SMAP's layout."""
    n1, n2, nz, x0, z0, dz = 8, 10, 6, 5.0, 3.0, 25.0
    p = Polynomial([1.0, 0.5, -0.05, 0.003])  # along dim1 = rows (y)
    q = Polynomial([2.0, -0.3, 0.02, 0.001])  # along dim2 = columns (x)
    r = Polynomial([0.5, 0.2, 0.01, -0.002])  # along z
    tp, tq, tr = _taylor(p, n1), _taylor(q, n2), _taylor(r, nz)
    coeff = np.zeros((n1, n2, nz, 64))
    for a in range(4):
        for b in range(4):
            for c in range(4):
                coeff[:, :, :, 16 * a + 4 * b + c] = (
                    tp[:, None, None, c] * tq[None, :, None, b] * tr[None, None, :, a]
                )
    path = _save_smap(tmp_path / "poly_3dcal.mat", coeff, dz, x0, z0)
    psf = SplinePSF.from_smap_mat(path, roi_px=5)
    x, y, z = 30.3, 40.8, 17.0
    values, row0, col0 = psf.roi(torch.tensor([[x, y, z]], dtype=torch.float64))
    rows = row0.item() + np.arange(5) + 0.5  # pixel centres
    cols = col0.item() + np.arange(5) + 0.5
    v1 = (x0 - 1) + (rows - y)  # dim1 voxel coordinate of each pixel
    v2 = (x0 - 1) + (cols - x)
    w = z0 + z / dz
    expected = p(v1)[:, None] * q(v2)[None, :] * r(w)
    np.testing.assert_allclose(values[0].numpy(), expected, rtol=1e-5)


def _smap_coefficients_of_astigmatic(n_vox: int, n_planes: int, dz: float) -> np.ndarray[Any, Any]:
    """SMAP-layout coefficients of the astigmatic Gaussian by SMAP's own recipe: per cell, the
    cubic through 4×4×4 points at thirds of the cell (a 64 × 64 linear solve)."""
    centre = (n_vox + 1) // 2 - 1  # 0-based centre voxel = x0 − 1
    z_ref = (n_planes - 1) // 2  # = z0
    t = np.arange(4) / 3.0
    v = (np.arange(n_vox - 1)[:, None] + t).ravel() - centre  # pixel-centre offsets, (cells·4,)
    w = (np.arange(n_planes - 1)[:, None] + t).ravel()
    z_nm = (w - z_ref) * dz
    s_x = SIGMA0_PX * np.sqrt(1 + ((z_nm + FOCAL_NM) / DEPTH_NM) ** 2)
    s_y = SIGMA0_PX * np.sqrt(1 + ((z_nm - FOCAL_NM) / DEPTH_NM) ** 2)

    def binned(offset: np.ndarray[Any, Any], sigma: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        s = math.sqrt(2) * sigma[:, None]
        out: np.ndarray[Any, Any] = 0.5 * (erf((offset + 0.5) / s) - erf((offset - 0.5) / s))
        return out  # (z points, offsets)

    g_row, g_col = binned(v, s_y), binned(v, s_x)  # dim1 = rows use σy; dim2 = columns use σx
    vals = g_row[:, :, None] * g_col[:, None, :]  # (z pts, dim1 pts, dim2 pts)
    nc, nzc = n_vox - 1, n_planes - 1
    vals = vals.reshape(nzc, 4, nc, 4, nc, 4)  # (kz, p3, i, p1, j, p2)
    rhs = vals.transpose(2, 4, 0, 1, 5, 3).reshape(nc, nc, nzc, 64)  # [i, j, k, 16p3 + 4p2 + p1]
    powers = np.array(
        [
            [
                t[p3] ** a * t[p2] ** b * t[p1] ** c
                for a in range(4)
                for b in range(4)
                for c in range(4)
            ]
            for p3 in range(4)
            for p2 in range(4)
            for p1 in range(4)
        ]
    )
    return np.linalg.solve(powers, rhs.reshape(-1, 64).T).T.reshape(nc, nc, nzc, 64)


@pytest.mark.parametrize("xyz", OFF_GRID[:5])
def test_smap_file_reproduces_astigmatic_gaussian(tmp_path: Path, xyz: tuple[float, ...]) -> None:
    """Orientation (x, in focus at z = −c, is the column) and reference (x0 − 1, z0) of a file."""
    n_vox, n_planes = 27, 41
    coeff = _smap_coefficients_of_astigmatic(n_vox, n_planes, Z_STEP_NM)
    x0, z0 = (n_vox + 1) // 2, (n_planes - 1) // 2
    path = _save_smap(tmp_path / "bead_3dcal.mat", coeff.astype(np.float32), Z_STEP_NM, x0, z0)
    psf = SplinePSF.from_smap_mat(path, ROI)
    pos = torch.tensor([xyz], dtype=torch.float64)
    expected = _astigmatic(ROI).roi(pos)[0]
    assert (psf.roi(pos)[0] - expected).abs().max().item() < SPLINE_ABS_TOL


def test_smap_coeff_in_a_cell(tmp_path: Path) -> None:
    coeff = np.zeros((4, 4, 3, 64))
    coeff[..., 0] = 0.01
    cell = np.empty((1,), dtype=object)
    cell[0] = coeff
    psf = SplinePSF.from_smap_mat(_save_smap(tmp_path / "c_3dcal.mat", cell, 10.0, 3, 1), 5)
    assert psf.coeff.shape == (3, 4, 4, 4, 4, 4)
    assert psf.z_step_nm == 10.0


# ---------------------------------------------------------------------- config dispatch
def test_from_config_reads_npy_tif_and_mat(tmp_path: Path, stack: np.ndarray[Any, Any]) -> None:
    np.save(tmp_path / "psf.npy", stack)
    tifffile.imwrite(tmp_path / "psf.tif", stack.astype(np.float32))
    mat = _save_smap(tmp_path / "b_3dcal.mat", np.zeros((4, 4, 3, 64)), 10.0, 3, 1)
    pos = torch.tensor([[20.2, 20.6, 100.0]], dtype=torch.float64)
    reference = SplinePSF.from_zstack(stack, Z_STEP_NM, ROI).roi(pos)[0]
    for name in ("psf.npy", "psf.tif"):
        cfg = SplinePsfConfig(calibration=tmp_path / name, z_step_nm=Z_STEP_NM, roi_px=ROI)
        psf = build_psf(cfg, pixel_size_nm=100.0)
        assert isinstance(psf, SplinePSF)
        torch.testing.assert_close(psf.roi(pos)[0], reference, atol=1e-6, rtol=1e-5)
    psf = SplinePSF.from_config(SplinePsfConfig(calibration=mat, roi_px=7))
    assert psf.roi_px == 7 and psf.z_step_nm == 10.0


# ---------------------------------------------------------------------- bad files
def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not a MATLAB file" * 10)
    return path


def _v73(path: Path) -> Path:
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + b"\0" * 8 + b"\x00\x02IM"
    path.write_bytes(header + b"\0" * 512)
    return path


def _no_sxy(path: Path) -> Path:
    scipy.io.savemat(path, {"cal": np.zeros(3)})
    return path


def _no_cspline(path: Path) -> Path:
    scipy.io.savemat(path, {"SXY": {"gauss_zfit": np.zeros(3)}})
    return path


def _good_coeff() -> np.ndarray[Any, Any]:
    return np.zeros((4, 4, 3, 64))


def _two_calibrations(path: Path) -> Path:
    sxy = np.empty((2,), dtype=[("cspline", object)])
    for i in range(2):
        sxy[i]["cspline"] = {"coeff": _good_coeff(), "dz": 10.0, "x0": 3, "z0": 1}
    scipy.io.savemat(path, {"SXY": sxy})
    return path


def _two_channels(path: Path) -> Path:
    cell = np.empty((2,), dtype=object)
    cell[0], cell[1] = _good_coeff(), _good_coeff()
    return _save_smap(path, cell, 10.0, 3, 1)


def _no_dz(path: Path) -> Path:
    scipy.io.savemat(path, {"SXY": {"cspline": {"coeff": _good_coeff(), "x0": 3, "z0": 1}}})
    return path


MAT_CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda p: p, "not found"),
    "garbage": (_garbage, "not a readable MATLAB .mat"),
    "v7.3": (_v73, "v7.3"),
    "no SXY": (_no_sxy, "no variable 'SXY'"),
    "no cspline": (_no_cspline, "no 'cspline'"),
    "struct array": (_two_calibrations, "2 calibrations"),
    "two channels": (_two_channels, "2 channels"),
    "no dz": (_no_dz, "lacks field(s) ['dz']"),
    "16 coefficients": (lambda p: _save_smap(p, np.zeros((4, 4, 3, 16)), 10.0, 3, 1), "shape"),
    "3-D coeff": (lambda p: _save_smap(p, np.zeros((4, 4, 64)), 10.0, 3, 1), "shape"),
    "nan coeff": (lambda p: _save_smap(p, np.full((4, 4, 3, 64), np.nan), 10.0, 3, 1), "NaN"),
    "negative dz": (lambda p: _save_smap(p, _good_coeff(), -10.0, 3, 1), "z step"),
    "two x0": (lambda p: _save_smap(p, _good_coeff(), 10.0, np.array([3, 4]), 1), "x0"),
}


@pytest.mark.parametrize("case", sorted(MAT_CASES))
def test_bad_smap_file(tmp_path: Path, case: str) -> None:
    make, message = MAT_CASES[case]
    path = make(tmp_path / "bad_3dcal.mat")
    with pytest.raises(CalibrationError, match=r"bad_3dcal\.mat") as info:
        SplinePSF.from_config(SplinePsfConfig(calibration=path))
    assert message in str(info.value)


def _npy(array: np.ndarray[Any, Any]) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        np.save(path, array)
        return path

    return make


def _pickled(path: Path) -> Path:
    np.save(path, np.array([{}]), allow_pickle=True)
    return path


ZSTACK_CASES: dict[str, tuple[Callable[[Path], Path], float | None, str]] = {
    "missing": (lambda p: p, Z_STEP_NM, "not found"),
    "2-D": (_npy(np.ones((31, 31))), Z_STEP_NM, "3-D (Z, Y, X)"),
    "too few planes": (_npy(np.ones((3, 31, 31))), Z_STEP_NM, "at least 4"),
    "nan": (_npy(np.full((5, 9, 9), np.nan)), Z_STEP_NM, "NaN"),
    "empty plane": (_npy(np.zeros((5, 9, 9))), Z_STEP_NM, "sums to <= 0"),
    "no z step": (_npy(np.ones((5, 9, 9))), None, "set psf.z_step_nm"),
    "pickled object": (_pickled, Z_STEP_NM, "cannot read"),
}


@pytest.mark.parametrize("case", sorted(ZSTACK_CASES))
def test_bad_zstack_file(tmp_path: Path, case: str) -> None:
    make, z_step, message = ZSTACK_CASES[case]
    path = make(tmp_path / "bad_stack.npy")
    cfg = SplinePsfConfig(calibration=path, z_step_nm=z_step)
    with pytest.raises(CalibrationError, match=r"bad_stack\.npy") as info:
        SplinePSF.from_config(cfg)
    assert message in str(info.value)


def test_unknown_suffix_and_conflicting_z_step(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"psf\.png: unknown calibration type '\.png'"):
        SplinePSF.from_config(SplinePsfConfig(calibration=tmp_path / "psf.png"))
    mat = _save_smap(tmp_path / "b_3dcal.mat", _good_coeff(), 10.0, 3, 1)
    with pytest.raises(CalibrationError, match=r"conflicts with the file's dz = 10\.0 nm"):
        SplinePSF.from_config(SplinePsfConfig(calibration=mat, z_step_nm=20.0))
