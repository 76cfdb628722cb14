"""The simulated acquisition: frames, ground truth, laser response, bleaching, reproducibility.

Densities are emitters per µm² per frame. Tolerances are stated per test; seeds are fixed.
Theory for a pool of N_dark dark fluorophores activated with probability p = 1 − exp(−k) per frame
(k = spontaneous + a·P): N_dark·p activations per frame, each seen in 1 + τ frames on average.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from live_decode.config import Config, config_from_dict, load_config
from live_decode.simulation.camera import Camera
from live_decode.simulation.microscope import TRUTH_DTYPE, SimulatedMicroscope

CONFIGS = Path(__file__).parents[3] / "configs"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Frames are small: one thread is fastest, and beside other jobs, 10× faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(
    fov: int = 64,
    pool: float = 1000.0,
    activation: float = 1e-4,
    bleach: float = 0.3,
    laser_mw: float = 5.0,
    seed: int = 0,
    **sections: dict[str, Any],
) -> Config:
    data: dict[str, Any] = {
        "emitters": {"structure": "uniform", "density_per_um2": 1.0},
        "photophysics": {
            "on_time_mean_frames": 2.0,
            "activation_per_frame_per_mw": activation,
            "spontaneous_activation_per_frame": 0.0,
            "bleach_probability": bleach,
        },
        "microscope": {
            "fov_px": [fov, fov],
            "pool_per_um2": pool,
            "seed": seed,
            "laser": {"power_mw": laser_mw, "max_power_mw": 100.0},
        },
    }
    data.update(sections)
    return config_from_dict(data)


def _steady_density(m: SimulatedMicroscope, laser_mw: float) -> float:
    """Theoretical density: N_dark · p · (1 + τ) / area."""
    ph = m.cfg.photophysics
    k = ph.spontaneous_activation_per_frame + ph.activation_per_frame_per_mw * laser_mw
    dark = m.pool.counts()["dark"]
    return dark * (1.0 - math.exp(-k)) * (1.0 + ph.on_time_mean_frames) / m.fov_area_um2


def _densities(m: SimulatedMicroscope, frames: int) -> np.ndarray:
    return np.array([m.next_frame().density_per_um2 for _ in range(frames)])


def test_demo_config_starts_near_its_configured_density() -> None:
    """configs/demo.yaml (filaments, seed 0) at its laser power: mean of 30 frames within 20 %."""
    cfg = load_config(CONFIGS / "demo.yaml")
    m = SimulatedMicroscope(cfg)
    assert float(_densities(m, 30).mean()) == pytest.approx(cfg.emitters.density_per_um2, rel=0.2)


def test_density_follows_the_laser_within_a_few_frames() -> None:
    """5 → 20 → 0 mW. Steady state within 12 % of theory (~3 σ over 60 correlated frames);
    frames 3–5 after the step already ≥ 70 % of it; after switching off, < 2 % within 10 frames.
    """
    m = SimulatedMicroscope(_cfg(laser_mw=5.0))
    low = _densities(m, 60).mean()
    assert low == pytest.approx(_steady_density(m, 5.0), rel=0.12)

    m.laser_power_mw = 20.0
    target = _steady_density(m, 20.0)
    step = _densities(m, 66)
    assert step[3:6].mean() >= 0.7 * target
    assert step[6:].mean() == pytest.approx(target, rel=0.12)
    assert step[6:].mean() / low == pytest.approx(4.0, rel=0.15)  # density ∝ power

    m.laser_power_mw = 0.0
    off = _densities(m, 20)
    assert off[10:].mean() < 0.02 * target


def test_density_decays_as_the_pool_bleaches() -> None:
    """At constant power the density falls as exp(−r·t); r within 15 % of the two-state theory.

    Dark ⇄ on with rates k and (1 − b)/τ, on → bleached with b/τ: r is the slow eigenvalue of
    [[−k, (1 − b)/τ], [k, −1/τ]]. Fit of log density over 10-frame bins, 150 frames.
    """
    tau, b, laser_mw, a = 2.0, 0.5, 50.0, 1e-3
    m = SimulatedMicroscope(
        _cfg(fov=32, pool=300.0, activation=a, bleach=b, laser_mw=laser_mw), warm_up_frames=10
    )
    bleached = [m.pool.counts()["bleached"]]
    bins = []
    for _ in range(15):
        bins.append(_densities(m, 10).mean())
        bleached.append(m.pool.counts()["bleached"])
    rate = -np.polyfit(np.arange(15) * 10.0, np.log(bins), 1)[0]
    k = a * laser_mw  # activation rate per frame
    theory = -max(np.linalg.eigvals(np.array([[-k, (1 - b) / tau], [k, -1.0 / tau]])).real)
    assert rate == pytest.approx(theory, rel=0.15)
    assert bins[-1] < 0.2 * bins[0]
    assert np.all(np.diff(bleached) >= 0)


def test_same_seed_same_acquisition_other_seed_other() -> None:
    m1, m2, m3 = (SimulatedMicroscope(_cfg(seed=s)) for s in (3, 3, 4))
    for _ in range(5):
        f1, f2, f3 = m1.next_frame(), m2.next_frame(), m3.next_frame()
        np.testing.assert_array_equal(f1.adu, f2.adu)
        np.testing.assert_array_equal(f1.truth, f2.truth)
        assert not np.array_equal(f1.adu, f3.adu)


@pytest.mark.parametrize("power_mw", [-1.0, 100.5, math.nan, math.inf])
def test_laser_outside_its_range_is_refused(power_mw: float) -> None:
    m = SimulatedMicroscope(_cfg(fov=16), warm_up_frames=0)
    with pytest.raises(ValueError, match=r"outside the laser's range \[0, 100\] mW"):
        m.laser_power_mw = power_mw
    assert m.laser_power_mw == 5.0


@pytest.mark.parametrize("power_mw", [0.0, 42.0, 100.0])
def test_laser_within_its_range_is_applied_to_the_next_frame(power_mw: float) -> None:
    m = SimulatedMicroscope(_cfg(fov=16), warm_up_frames=0)
    m.laser_power_mw = power_mw
    assert m.next_frame().laser_mw == power_mw


def test_frames_and_ground_truth_have_the_documented_form() -> None:
    cfg = _cfg(fov=48)
    m = SimulatedMicroscope(cfg)
    assert m.fov_px == (48, 48)
    for i in range(3):
        f = m.next_frame()
        assert f.index == i
        assert f.adu.shape == (48, 48)
        assert f.adu.dtype == np.uint16
        assert f.truth.dtype == TRUTH_DTYPE
        assert f.elapsed_ms == pytest.approx(i * cfg.microscope.frame_interval_ms)
        assert f.density_per_um2 == pytest.approx(len(f.truth) / m.fov_area_um2)
        assert len(f.truth) > 0
        assert np.all(f.truth["frame"] == i)
        size_nm = 48 * cfg.camera.pixel_size_nm
        for col in ("x_nm", "y_nm"):
            assert np.all((f.truth[col] >= 0) & (f.truth[col] < size_nm))
        assert np.all(f.truth["photons"] > 0)
        assert f.timestamp_ns > 0
    assert m.frame_index == 3


def test_emitters_keep_their_identity_and_position_across_frames() -> None:
    m = SimulatedMicroscope(_cfg())
    a, b = m.next_frame().truth, m.next_frame().truth
    common, ia, ib = np.intersect1d(a["id"], b["id"], return_indices=True)
    assert len(common) > 0
    np.testing.assert_array_equal(a["x_nm"][ia], b["x_nm"][ib])


def test_camera_metadata_describes_the_camera() -> None:
    cfg = load_config(CONFIGS / "scmos_2d.yaml")
    meta = SimulatedMicroscope(cfg, warm_up_frames=0).camera_metadata()
    assert meta == {
        "kind": "scmos",
        "pixel_size_nm": 108.0,
        "baseline_adu": 100.0,
        "e_per_adu": 0.46,
        "em_gain": 1.0,
        "qe": 0.8,
        "read_noise_e": 1.6,
        "spurious_charge_e": 0.0,
        "exposure_ms": 10.0,
        "frame_interval_ms": 10.0,
    }


def test_background_alone_stays_within_its_configured_levels() -> None:
    """No activation: frames are background only; photons/px within (low, high) ± 3 %."""
    cfg = _cfg(fov=32, activation=0.0, background={"uniform_photons": [40, 80]})
    m = SimulatedMicroscope(cfg)
    camera = Camera(cfg.camera)
    levels = []
    for _ in range(30):
        f = m.next_frame()
        assert len(f.truth) == 0
        levels.append(float(camera.to_photons(torch.from_numpy(f.adu.astype(np.float64))).mean()))
    assert min(levels) >= 40 * 0.97
    assert max(levels) <= 80 * 1.03


def test_warm_up_brings_the_first_frame_to_steady_state() -> None:
    """From all-dark, frame 0 sees only new activations: ≈ 1/(1 + τ) of the steady density."""
    cold = SimulatedMicroscope(_cfg(laser_mw=20.0), warm_up_frames=0).next_frame()
    warm = SimulatedMicroscope(_cfg(laser_mw=20.0)).next_frame()
    assert cold.density_per_um2 < 0.6 * warm.density_per_um2
    with pytest.raises(ValueError, match="warm-up"):
        SimulatedMicroscope(_cfg(fov=16)).warm_up(-1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ground_truth_is_the_same_on_cuda() -> None:
    cpu, gpu = SimulatedMicroscope(_cfg()), SimulatedMicroscope(_cfg(), device="cuda")
    for _ in range(3):
        a, b = cpu.next_frame(), gpu.next_frame()
        np.testing.assert_array_equal(a.truth, b.truth)
        assert a.adu.mean() == pytest.approx(b.adu.mean(), rel=0.05)
