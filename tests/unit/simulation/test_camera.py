"""Camera noise statistics against theory: EMCCD (excess noise 2), sCMOS, inverse map, ADC clip.

Moments are estimated from 512×512 = 262,144 pixels of constant input. The standard error of a
variance from n samples is about sqrt((κ - 1)/n) relative (κ the kurtosis, < 10 here), so ≲ 0.6 %;
the tolerances below (mean 0.5 %, variance 3 %) are several standard errors wide. Seeds are fixed.
"""

from __future__ import annotations

import math

import pytest
import torch

from live_decode.config import CameraConfig
from live_decode.simulation.camera import Camera, sample_gamma

SHAPE = (512, 512)
EMCCD = CameraConfig(
    kind="emccd",
    qe=0.9,
    baseline_adu=100,
    e_per_adu=45,
    em_gain=300,
    read_noise_e=74.4,
    spurious_charge_e=0.002,
)
SCMOS = CameraConfig(
    kind="scmos",
    qe=0.8,
    baseline_adu=100,
    e_per_adu=0.46,
    em_gain=1,
    read_noise_e=1.6,
    spurious_charge_e=0.0,
)


def _adu(cfg: CameraConfig, photons: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    ph = torch.full(SHAPE, photons, dtype=torch.float64)
    return Camera(cfg).forward(ph, gen)


def _theory(cfg: CameraConfig, photons: float) -> tuple[float, float]:
    """Mean and variance of ADU for a constant expected photon count per pixel."""
    rate = cfg.qe * photons + cfg.spurious_charge_e  # photo-electrons (+ spurious), Poisson
    gain = cfg.em_gain if cfg.kind == "emccd" else 1.0
    excess = 2.0 if cfg.kind == "emccd" else 1.0  # Gamma(Poisson(rate), gain): F² = 2 exactly
    mean = rate * gain / cfg.e_per_adu + cfg.baseline_adu
    var = (excess * rate * gain**2 + cfg.read_noise_e**2) / cfg.e_per_adu**2 + 1.0 / 12.0
    return mean, var


@pytest.mark.parametrize(
    ("cfg", "photons"),
    [(EMCCD, 5.0), (EMCCD, 50.0), (EMCCD, 400.0), (SCMOS, 20.0), (SCMOS, 200.0)],
    ids=["emccd-5", "emccd-50", "emccd-400", "scmos-20", "scmos-200"],
)
def test_adu_mean_and_variance_match_theory(cfg: CameraConfig, photons: float) -> None:
    adu = _adu(cfg, photons)
    mean, var = _theory(cfg, photons)
    assert float(adu.mean()) == pytest.approx(mean, rel=0.005)
    assert float(adu.var()) == pytest.approx(var, rel=0.03)


@pytest.mark.parametrize("photons", [20.0, 200.0])
def test_emccd_excess_noise_factor_is_two(photons: float) -> None:
    """Var(electrons after EM) / (gain² · mean photo-electrons) = F² ≈ 2 (within 3 %)."""
    cfg = EMCCD
    gen = torch.Generator().manual_seed(1)
    e = Camera(cfg).electrons(torch.full(SHAPE, photons, dtype=torch.float64), gen)
    rate = cfg.qe * photons + cfg.spurious_charge_e
    assert float(e.var()) / (cfg.em_gain**2 * rate) == pytest.approx(2.0, rel=0.03)


def test_scmos_has_no_excess_noise() -> None:
    """Without EM gain, photo-electrons are Poisson: variance / mean = 1 (within 2 %)."""
    gen = torch.Generator().manual_seed(2)
    e = Camera(SCMOS).electrons(torch.full(SHAPE, 100.0, dtype=torch.float64), gen)
    assert float(e.var() / e.mean()) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("cfg", [EMCCD, SCMOS], ids=["emccd", "scmos"])
@pytest.mark.parametrize("photons", [30.0, 300.0])
def test_to_photons_inverts_the_mean_within_one_percent(cfg: CameraConfig, photons: float) -> None:
    adu = _adu(cfg, photons, seed=3)
    recovered = float(Camera(cfg).to_photons(adu).mean())
    assert recovered == pytest.approx(photons, rel=0.01)


@pytest.mark.parametrize("shape", [1.0, 3.0, 20.0, 250.0])
def test_gamma_sampler_mean_and_variance(shape: float) -> None:
    """Gamma(k, 1): mean k (0.5 %), variance k (3 %)."""
    gen = torch.Generator().manual_seed(4)
    x = sample_gamma(torch.full((200_000,), shape, dtype=torch.float64), gen)
    assert float(x.mean()) == pytest.approx(shape, rel=0.005)
    assert float(x.var()) == pytest.approx(shape, rel=0.03)
    assert bool((x > 0).all())


def test_gamma_sampler_is_zero_for_zero_shape_and_seeded() -> None:
    shape = torch.tensor([0.0, 2.0, 0.0, 5.0] * 1000)
    a = sample_gamma(shape, torch.Generator().manual_seed(5))
    b = sample_gamma(shape, torch.Generator().manual_seed(5))
    assert bool((a[shape == 0] == 0).all())
    assert torch.equal(a, b)


def test_adc_clips_at_max_adu_and_zero() -> None:
    cfg = EMCCD.model_copy(update={"max_adu": 1000, "baseline_adu": 0.0})
    photons = torch.tensor([[0.0] * 4 + [1e4] * 4] * 1000, dtype=torch.float64)
    adu = Camera(cfg).forward(photons, torch.Generator().manual_seed(6))
    assert float(adu.max()) == 1000.0
    assert float(adu.min()) == 0.0  # baseline 0 + read noise goes negative: clipped at 0
    assert bool((adu[:, 4:] == 1000).all())  # ~ 9e4 ADU expected: saturated
    assert torch.equal(adu, torch.round(adu))


def test_camera_is_reproducible_with_a_seed() -> None:
    assert torch.equal(_adu(EMCCD, 10.0, seed=7), _adu(EMCCD, 10.0, seed=7))
    assert not torch.equal(_adu(EMCCD, 10.0, seed=7), _adu(EMCCD, 10.0, seed=8))


def test_theory_helper_reports_the_expected_excess() -> None:
    """Guard the test's own formula: EMCCD noise at high signal is √2 × the shot noise."""
    mean, var = _theory(EMCCD, 1e4)
    shot_sd_adu = math.sqrt(EMCCD.qe * 1e4) * EMCCD.em_gain / EMCCD.e_per_adu
    assert math.sqrt(var) / shot_sd_adu == pytest.approx(math.sqrt(2.0), rel=0.01)
    assert mean > EMCCD.baseline_adu
