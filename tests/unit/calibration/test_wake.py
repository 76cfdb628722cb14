"""Wake phase: the PSF of a simulated movie recovered through the forward model's likelihood.

The setup's PSF is wrong (σ 20 % narrower than the movie's, or round where the movie's is mildly
astigmatic); the wake fit starts from it and must land within 5 % of the truth, from
ground-truth-like localizations (jittered positions, photons 15 % low) and from the bundled
network's own localizations, and the likelihood must rise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import live_decode as ld
from live_decode.calibration.wake import WakeOptions, WakeResult, wake
from live_decode.config import Config, config_from_dict
from live_decode.errors import CalibrationError
from live_decode.messages import CameraMeta, Localizations, empty_locs

FRAMES = 30
WIDER = {"kind": "gaussian", "sigma_nm": 156.0}  # 20 % wider than the setup's 130 nm
ASTIGMATIC = {"kind": "gaussian", "sigma_nm": 143.0, "sigma_y_nm": 117.0}  # ±10 %
SETUP_PSF = {"kind": "gaussian", "sigma_nm": 130.0}


def _config(psf: dict[str, Any]) -> Config:
    return config_from_dict({**ld.demo_config().model_dump(), "psf": psf})


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _truthish(truth: Any, seed: int = 0) -> Localizations:
    """Ground truth as a network with 15 nm position error and photons 15 % low would give it."""
    rng = np.random.default_rng(seed)
    locs = np.zeros(len(truth), dtype=empty_locs().dtype)
    for c in ("frame", "x_nm", "y_nm", "z_nm", "photons"):
        locs[c] = truth[c].to_numpy()
    locs["x_nm"] += rng.normal(0.0, 15.0, len(locs))
    locs["y_nm"] += rng.normal(0.0, 15.0, len(locs))
    locs["photons"] *= 0.85
    locs["prob"] = 1.0
    return locs


def _check(result: WakeResult, psf: dict[str, Any]) -> None:
    sx = float(psf["sigma_nm"])
    sy = float(psf.get("sigma_y_nm", sx))
    assert result.psf_after["sigma_x_nm"] == pytest.approx(sx, rel=0.05)
    assert result.psf_after["sigma_y_nm"] == pytest.approx(sy, rel=0.05)
    assert result.loglik_after_per_px > result.loglik_before_per_px
    assert result.chi2_after_per_px < result.chi2_before_per_px


@pytest.mark.parametrize(
    ("psf", "shape"), [(WIDER, None), (ASTIGMATIC, "elliptical")], ids=["wider", "astigmatic"]
)
def test_wake_recovers_the_psf_from_truthish_localizations(psf: dict[str, Any], shape: Any) -> None:
    sim = ld.simulate(_config(psf), frames=FRAMES, seed=3)
    result = wake(sim.movie, _truthish(sim.truth), _config(SETUP_PSF), WakeOptions(psf_shape=shape))
    _check(result, psf)
    written = result.config.psf
    assert written.kind == "gaussian"
    assert (written.sigma_y_nm is None) == (shape is None)


@pytest.mark.parametrize(
    ("psf", "shape"), [(WIDER, None), (ASTIGMATIC, "elliptical")], ids=["wider", "astigmatic"]
)
def test_wake_recovers_the_psf_from_the_networks_localizations(
    psf: dict[str, Any], shape: Any
) -> None:
    setup = _config(SETUP_PSF)
    sim = ld.simulate(_config(psf), frames=FRAMES, seed=4)
    model = ld.load_model(config=setup)
    locs = model.localize_array(sim.movie, camera=CameraMeta.from_camera(setup.camera))
    result = wake(sim.movie, locs, setup, WakeOptions(psf_shape=shape))
    _check(result, psf)
    assert result.n_emitters > 500
    lo, hi = result.config.background.uniform_photons
    assert 40.0 < lo <= hi < 80.0  # the demo's background is drawn from [40, 80] photons/px


def test_wake_refuses_too_few_localizations() -> None:
    sim = ld.simulate(_config(SETUP_PSF), frames=3, seed=5)
    locs = _truthish(sim.truth)[:5]
    with pytest.raises(CalibrationError, match="--min-prob"):
        wake(sim.movie, locs, _config(SETUP_PSF))
