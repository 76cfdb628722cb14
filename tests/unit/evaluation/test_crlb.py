"""CRLB from the PSF model's Fisher information, against closed forms and physical limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from live_decode.config import CameraConfig, GaussianPsfConfig
from live_decode.evaluation.crlb import Crlb, crlb, fisher_information
from live_decode.simulation.psf import AstigmaticPSF, GaussianPSF, build_psf
from live_decode.simulation.spline_psf import SplinePSF

PIXEL_NM, SIGMA_NM = 100.0, 130.0
IDEAL = CameraConfig(
    kind="scmos", pixel_size_nm=PIXEL_NM, qe=1.0, em_gain=1.0, read_noise_e=0.0,
    spurious_charge_e=0.0,
)  # fmt: skip
EMCCD = IDEAL.model_copy(update={"kind": "emccd", "em_gain": 300.0})


def _gaussian() -> GaussianPSF:
    psf = build_psf(GaussianPsfConfig(sigma_nm=SIGMA_NM, roi_px=31), PIXEL_NM)
    assert isinstance(psf, GaussianPSF)
    return psf


def _at(n: int, x: float = 20.3, y: float = 20.7, z: float = 0.0) -> torch.Tensor:
    return torch.tensor([[x, y, z]] * n, dtype=torch.float64)


def _mortensen_mle_variance(photons: float, bg: float) -> float:
    """Mortensen et al. 2010 (Nat. Methods 7:377), eq. 6: variance (nm²) of the MLE of a pixelated
    Gaussian with Poisson noise, which reaches the CRLB, with σa² = σ² + a²/12."""
    a = PIXEL_NM
    sa2 = SIGMA_NM**2 + a**2 / 12
    if bg == 0:
        return sa2 / photons
    tau = 2 * math.pi * sa2 * bg / (photons * a**2)
    integral = float(quad(lambda t: math.log(t) / (1 + t / tau), 0.0, 1.0)[0])
    return sa2 / photons / (1 + integral)


def _mortensen_lsq_variance(photons: float, bg: float) -> float:
    """Mortensen eq. 5, least-squares variance (σa²/N)(16/9 + 8π σa² b/(N a²)): above the CRLB."""
    a = PIXEL_NM
    sa2 = SIGMA_NM**2 + a**2 / 12
    return sa2 / photons * (16 / 9 + 8 * math.pi * sa2 * bg / (photons * a**2))


PHOTONS_BG = [(200, 5), (500, 0), (1000, 1), (1000, 10), (3000, 20), (5000, 100), (10000, 1)]


def test_gaussian_matches_mortensen() -> None:
    """x and y CRLB of an ideal Poisson camera within 2 % of Mortensen's closed form."""
    photons = torch.tensor([p for p, _ in PHOTONS_BG], dtype=torch.float64)
    bg = torch.tensor([b for _, b in PHOTONS_BG], dtype=torch.float64)
    bound = crlb(_gaussian(), _at(len(PHOTONS_BG)), photons, bg, IDEAL)
    for i, (n, b) in enumerate(PHOTONS_BG):
        expected = _mortensen_mle_variance(n, b)
        assert bound.x_nm[i].item() ** 2 == pytest.approx(expected, rel=0.02)
        assert bound.y_nm[i].item() ** 2 == pytest.approx(expected, rel=0.02)
        assert bound.x_nm[i].item() ** 2 < _mortensen_lsq_variance(n, b)


def test_gaussian_photon_and_background_bounds_are_sane() -> None:
    """Without background the photon count is Poisson-limited: σ_N = √N."""
    photons = torch.tensor([100.0, 1000.0, 10000.0], dtype=torch.float64)
    bound = crlb(_gaussian(), _at(3), photons, torch.zeros(3, dtype=torch.float64), IDEAL)
    torch.testing.assert_close(bound.photons, photons.sqrt(), rtol=1e-3, atol=0.0)
    assert (bound.bg >= 0).all()


def test_two_d_psf_has_no_z() -> None:
    bound = crlb(_gaussian(), _at(2), torch.tensor([1e3, 2e3]), torch.tensor([10.0, 5.0]), IDEAL)
    assert torch.isnan(bound.z_nm).all()
    table = bound.as_tensor()
    assert table.shape == (2, 5)
    assert torch.isfinite(table[:, [0, 1, 3, 4]]).all()


@pytest.mark.parametrize("photons, bg", [(300.0, 2.0), (2000.0, 20.0), (8000.0, 150.0)])
def test_emccd_doubles_the_variance(photons: float, bg: float) -> None:
    args = (_gaussian(), _at(1), torch.tensor([photons]), torch.tensor([bg]))
    ideal, emccd = crlb(*args, IDEAL).as_tensor(), crlb(*args, EMCCD).as_tensor()
    ratio = (emccd[:, [0, 1, 3, 4]] / ideal[:, [0, 1, 3, 4]]) ** 2
    torch.testing.assert_close(ratio, torch.full_like(ratio, 2.0), rtol=1e-6, atol=0.0)


@pytest.mark.parametrize(
    "update, factor",
    [
        ({"qe": 0.5}, 2.0),  # half the photons detected, no background: twice the variance
        ({"pixel_size_nm": 50.0}, 0.25),  # same PSF in px, half the nm per px
    ],
)
def test_camera_scaling(update: dict[str, float], factor: float) -> None:
    args = (_gaussian(), _at(1), torch.tensor([2000.0]), torch.tensor([0.0]))
    base = crlb(*args, IDEAL).x_nm
    scaled = crlb(*args, IDEAL.model_copy(update=update)).x_nm
    assert (scaled / base).item() ** 2 == pytest.approx(factor, rel=1e-4)


@pytest.mark.parametrize("read_noise_e, qe", [(2.0, 1.0), (4.0, 1.0), (3.0, 0.8)])
def test_read_noise_is_extra_background(read_noise_e: float, qe: float) -> None:
    """Poisson approximation of read noise: σ² e⁻ per pixel count like σ²/QE more background
    photons per pixel, so the whole Fisher information equals that of the shifted background."""
    psf, xyz, photons = _gaussian(), _at(1), torch.tensor([1000.0], dtype=torch.float64)
    bg = torch.tensor([5.0], dtype=torch.float64)
    noisy = IDEAL.model_copy(update={"read_noise_e": read_noise_e, "qe": qe})
    clean = IDEAL.model_copy(update={"qe": qe})
    fi_read = fisher_information(psf, xyz, photons, bg, noisy)
    fi_bg = fisher_information(psf, xyz, photons, bg + read_noise_e**2 / qe, clean)
    scale = float(fi_bg.abs().max())
    torch.testing.assert_close(fi_read, fi_bg, rtol=1e-9, atol=1e-12 * scale)
    assert crlb(psf, xyz, photons, bg, noisy).x_nm > crlb(psf, xyz, photons, bg, clean).x_nm


def test_astigmatic_z_bound_is_finite_and_rises_away_from_focus() -> None:
    psf = AstigmaticPSF(1.1, 250.0, 400.0, 31)
    z = torch.tensor([-800.0, -200.0, -100.0, 0.0, 100.0, 200.0, 800.0], dtype=torch.float64)
    xyz = torch.stack([torch.full_like(z, 20.5), torch.full_like(z, 20.5), z], dim=1)
    bound = crlb(psf, xyz, torch.full_like(z, 3000.0), torch.full_like(z, 20.0), IDEAL)
    sz = bound.z_nm.numpy()
    assert np.isfinite(sz).all()
    assert np.argmin(sz) == 3  # best at z = 0, between the two foci
    assert sz[3] < sz[4] < sz[5] and sz[3] < sz[2] < sz[1]
    assert sz[0] > 1.2 * sz[3] and sz[6] > 1.2 * sz[3]
    np.testing.assert_allclose(sz, sz[::-1], rtol=1e-6)  # symmetric astigmatism


def test_spline_bound_matches_its_gaussian() -> None:
    """Autodiff through the spline gives the CRLB of the Gaussian it interpolates, within 3 %."""
    gauss = AstigmaticPSF(1.1, 250.0, 400.0, 31)
    planes = torch.arange(-20, 21, dtype=torch.float64) * 40.0
    centre = torch.full_like(planes, 15.5)
    stack = gauss.roi(torch.stack([centre, centre, planes], dim=1))[0].numpy()
    spline = SplinePSF.from_zstack(stack, 40.0, 25)
    z = torch.tensor([-430.0, -120.0, 0.0, 77.0, 510.0], dtype=torch.float64)
    xyz = torch.stack([torch.full_like(z, 20.31), torch.full_like(z, 20.74), z], dim=1)
    args = (xyz, torch.full_like(z, 3000.0), torch.full_like(z, 20.0), IDEAL)
    expected = crlb(gauss, *args, roi_px=25).as_tensor()
    got = crlb(spline, *args).as_tensor()
    torch.testing.assert_close(got, expected, rtol=0.03, atol=0.0)


def test_roi_override_adds_information_and_leaves_the_psf_alone() -> None:
    psf = GaussianPSF(2.0, 7)
    args = (_at(1), torch.tensor([2000.0]), torch.tensor([10.0]), IDEAL)
    small = crlb(psf, *args)
    large = crlb(psf, *args, roi_px=21)
    assert psf.roi_px == 7
    assert large.x_nm.item() < small.x_nm.item()


def test_result_is_frozen() -> None:
    bound = crlb(_gaussian(), _at(1), torch.tensor([1e3]), torch.tensor([10.0]), IDEAL)
    assert isinstance(bound, Crlb)
    with pytest.raises(AttributeError):
        bound.x_nm = torch.zeros(1)  # type: ignore[misc]


def test_frame_edge_removes_information() -> None:
    """Pixels beyond the camera are not observed: an emitter on the edge has a larger bound."""
    psf = GaussianPSF(1.3, 15)
    xyz = torch.tensor(
        [[32.3, 32.6, 0.0], [0.05, 32.6, 0.0], [63.95, 32.6, 0.0], [0.05, 0.05, 0.0]],
        dtype=torch.float64,
    )
    args = (xyz, torch.full((4,), 2000.0), torch.full((4,), 60.0), IDEAL)
    lateral = [0, 1, 3, 4]  # z is NaN for a 2-D PSF
    free = crlb(psf, *args).as_tensor()[:, lateral]
    framed = crlb(psf, *args, frame_shape_px=(64, 64)).as_tensor()[:, lateral]
    torch.testing.assert_close(framed[0], free[0])  # far from the edges: unchanged
    torch.testing.assert_close(free[1], free[0], rtol=0.02, atol=0.0)  # unbounded camera
    assert framed[1, 0] > 1.5 * free[1, 0]  # half the spot is off the chip: x suffers most
    assert free[1, 1] < framed[1, 1] < framed[1, 0]
    torch.testing.assert_close(framed[2], framed[1], rtol=1e-6, atol=0.0)  # mirror image
    assert framed[3, 1] > 1.5 * free[3, 1]  # the corner: both axes
