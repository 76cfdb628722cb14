"""Blinking statistics: exponential on-times, Poisson counts per frame, photons = flux × on time.

Each test states its tolerance; seeds are fixed. Counts come from 10,000 windows of 40×40 px at
100 nm (16 µm²): a mean of 8 per frame has a standard error of 0.35 %, so 1.5 % is > 4 σ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from live_decode.config import PhotophysicsConfig
from live_decode.simulation.photophysics import FluorophorePool, blinking_windows

WINDOWS, FRAMES, SHAPE, PX_NM = 10_000, 3, (40, 40), 100.0
AREA_UM2 = SHAPE[0] * SHAPE[1] * (PX_NM / 1000.0) ** 2


def _windows(cfg: PhotophysicsConfig, density: float, seed: int) -> torch.Tensor:
    """Emitters per image, (WINDOWS, FRAMES) counts."""
    gen = torch.Generator().manual_seed(seed)
    em = blinking_windows(
        torch.full((WINDOWS,), density), FRAMES, SHAPE, PX_NM, (0.0, 0.0), cfg, gen
    )
    return torch.bincount(em.frame, minlength=WINDOWS * FRAMES).view(WINDOWS, FRAMES).double()


def _single_events(
    cfg: PhotophysicsConfig, n: int, exposure_fraction: float, frames: int, seed: int
) -> tuple[FluorophorePool, list[tuple[int, torch.Tensor, torch.Tensor]]]:
    """A pool where every fluorophore activates once (bleach probability 1); per-frame output."""
    gen = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=gen) * 10
    pool = FluorophorePool(xyz, cfg, exposure_fraction, gen)
    out = []
    for k in range(frames):
        em = pool.step(laser_mw=1.0, frame_index=k)
        out.append((k, em.id, em.photons))
    return pool, out


@pytest.mark.parametrize(("tau", "density"), [(2.0, 1.0), (1.0, 0.5), (4.0, 1.5)])
def test_counts_per_frame_are_poisson_with_the_requested_mean(tau: float, density: float) -> None:
    """Every frame of the window, edges included: mean = density·area (1.5 %), var/mean = 1 ± 0.07.

    The index of dispersion of 10,000 Poisson counts has a standard error of ~0.014 (0.07 = 5 σ).
    """
    cfg = PhotophysicsConfig(on_time_mean_frames=tau)
    counts = _windows(cfg, density, seed=10)
    expected = density * AREA_UM2
    for k in range(FRAMES):
        c = counts[:, k]
        assert float(c.mean()) == pytest.approx(expected, rel=0.015), f"frame {k}"
        assert float(c.var() / c.mean()) == pytest.approx(1.0, abs=0.07), f"frame {k}"


def test_zero_density_gives_no_emitters() -> None:
    assert float(_windows(PhotophysicsConfig(), 0.0, seed=11).sum()) == 0.0


def test_photons_per_frame_are_flux_times_on_fraction() -> None:
    """Stationary blinking: E[photons in a frame] = flux·density·area·τ/(1 + τ) (within 2 %).

    λ = density·area/(1 + τ) emitters start per frame and each is on τ frames on average, so λτ
    are on at any instant, each emitting ``photons_mean`` per frame of on-time.
    """
    cfg = PhotophysicsConfig(on_time_mean_frames=2.0, photons_mean=3000, photons_sigma=600)
    gen = torch.Generator().manual_seed(12)
    density = 1.0
    em = blinking_windows(
        torch.full((WINDOWS,), density), FRAMES, SHAPE, PX_NM, (0.0, 0.0), cfg, gen
    )
    per_image = torch.zeros(WINDOWS * FRAMES, dtype=torch.float64)
    per_image.index_add_(0, em.frame, em.photons.double())
    tau = cfg.on_time_mean_frames
    expected = cfg.photons_mean * density * AREA_UM2 * tau / (1.0 + tau)
    for k, mean in enumerate(per_image.view(WINDOWS, FRAMES).mean(0).tolist()):
        assert mean == pytest.approx(expected, rel=0.02), f"frame {k}"
    # No emitter gets more than a full frame of flux (+ 6σ of the flux spread) in one frame.
    assert float(em.photons.max()) <= cfg.photons_mean + 6 * cfg.photons_sigma


def test_on_times_are_exponential() -> None:
    """On-times of 4000 single events pass a KS test against Exp(τ) (p > 0.01); mean within 4 %.

    The laser activates ~all fluorophores in the first frames (rate 20/frame); 60 frames = 30 τ
    later every event has ended, so no on-time is censored.
    """
    tau = 2.0
    cfg = PhotophysicsConfig(
        on_time_mean_frames=tau, activation_per_frame_per_mw=20.0, bleach_probability=1.0
    )
    pool, _ = _single_events(cfg, n=4000, exposure_fraction=1.0, frames=60, seed=13)
    assert pool.counts() == {"dark": 0, "on": 0, "bleached": 4000}
    on_time = (pool.t_off - pool.t_on).double().numpy()
    assert on_time.mean() == pytest.approx(tau, rel=0.04)
    assert stats.kstest(on_time, "expon", args=(0.0, tau)).pvalue > 0.01
    # mean / median of an exponential is 1 / ln 2
    assert on_time.mean() / np.median(on_time) == pytest.approx(1.0 / np.log(2.0), rel=0.06)


@pytest.mark.parametrize("exposure_fraction", [1.0, 0.5])
def test_pool_photons_are_flux_times_exposed_on_time(exposure_fraction: float) -> None:
    """Each frame's photons = flux × (on time within [k, k + e)) / e, exactly (rtol 1e-4)."""
    cfg = PhotophysicsConfig(activation_per_frame_per_mw=0.3, bleach_probability=1.0)
    pool, frames = _single_events(
        cfg, n=500, exposure_fraction=exposure_fraction, frames=40, seed=14
    )
    e = exposure_fraction
    total = torch.zeros(len(pool), dtype=torch.float64)
    for k, ids, photons in frames:
        lo = torch.clamp(pool.t_on[ids], min=float(k))
        hi = torch.clamp(pool.t_off[ids], max=k + e)
        expected = pool.flux[ids] * (hi - lo).clamp(min=0) / e
        torch.testing.assert_close(photons, expected, rtol=1e-4, atol=1e-3)
        total.index_add_(0, ids, photons.double())
    if e == 1.0:  # with no dead time, the whole on-event is seen: flux × on-time
        done = pool.state == FluorophorePool.BLEACHED
        on_time = (pool.t_off - pool.t_on).double()
        torch.testing.assert_close(
            total[done], pool.flux[done].double() * on_time[done], rtol=1e-4, atol=1e-2
        )


def test_pool_activation_follows_the_laser() -> None:
    """Activations in a frame: Binomial(dark, 1 − exp(−(spontaneous + a·P))), within 4 σ."""
    cfg = PhotophysicsConfig(activation_per_frame_per_mw=1e-2, spontaneous_activation_per_frame=0)
    gen = torch.Generator().manual_seed(15)
    n = 20_000
    for laser_mw in (5.0, 20.0):
        pool = FluorophorePool(torch.zeros(n, 3), cfg, 1.0, gen)
        pool.step(laser_mw)
        started = int((pool.t_on > 0).sum())
        p = 1.0 - np.exp(-1e-2 * laser_mw)
        assert abs(started - n * p) < 4.0 * np.sqrt(n * p * (1 - p)), f"{laser_mw} mW"
    pool = FluorophorePool(torch.zeros(n, 3), cfg, 1.0, gen)
    pool.step(0.0)
    assert pool.counts()["dark"] == n  # no 405 nm, no spontaneous activation: nothing happens
