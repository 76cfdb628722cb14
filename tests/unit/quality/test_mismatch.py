"""Model-mismatch alarm on frames simulated from the bundled model's card.

The "network outputs" are the ground truth as an ideal network would report it through the
card's photon conversion: with the camera's EM gain twice the card's, every photon count the
network sees (emitters and background) is twice the true one. Calibration and test movies use
different seeds; frames are 48×48 to keep this fast.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from live_decode.config import Config, GaussianPsfConfig
from live_decode.model.card import read_card
from live_decode.model.checkpoint import bundled_model_path
from live_decode.quality.mismatch import (
    MismatchAlarm,
    MismatchBand,
    ResidualModel,
    calibrate_band,
    calibrate_from_config,
    expected_adu,
)
from live_decode.simulation.camera import Camera
from live_decode.simulation.microscope import SimulatedMicroscope


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def card_cfg() -> Config:
    return read_card(bundled_model_path()).parsed_config


@pytest.fixture(scope="module")
def band(card_cfg: Config) -> MismatchBand:
    return calibrate_from_config(card_cfg, n_frames=200, seed=101)


def _run(
    card: Config, movie: Config, n: int, band: MismatchBand, photon_scale: float = 1.0
) -> MismatchAlarm:
    mic_cfg = movie.microscope.model_copy(update={"fov_px": (48, 48), "seed": 7})
    mic = SimulatedMicroscope(movie.model_copy(update={"microscope": mic_cfg}))
    model = ResidualModel.from_config(card)
    alarm = MismatchAlarm(band)
    for i in range(n):
        f = mic.next_frame()
        t = f.truth
        value = model.chi2_per_px(
            f.adu, t["x_nm"], t["y_nm"], t["z_nm"], t["photons"] * photon_scale
        )
        alarm.update(i, value)
    return alarm


def test_matched_movie_false_alarm_rate_below_one_percent(
    card_cfg: Config, band: MismatchBand
) -> None:
    alarm = _run(card_cfg, card_cfg, 400, band)
    assert alarm.frames_in_alarm / alarm.frames_seen < 0.01
    assert band.contains(alarm.running)


def test_alarm_fires_for_twice_the_camera_gain(card_cfg: Config, band: MismatchBand) -> None:
    cam = card_cfg.camera.model_copy(update={"em_gain": 2.0 * card_cfg.camera.em_gain})
    alarm = _run(card_cfg, card_cfg.model_copy(update={"camera": cam}), 200, band, 2.0)
    assert alarm.first_raised_frame is not None and alarm.first_raised_frame < 200
    assert alarm.running > band.hi


def test_alarm_fires_for_a_psf_one_and_a_half_times_wider(
    card_cfg: Config, band: MismatchBand
) -> None:
    psf = card_cfg.psf
    assert isinstance(psf, GaussianPsfConfig)
    wide = psf.model_copy(update={"sigma_nm": 1.5 * psf.sigma_nm})
    alarm = _run(card_cfg, card_cfg.model_copy(update={"psf": wide}), 200, band)
    assert alarm.first_raised_frame is not None and alarm.first_raised_frame < 200


def test_expected_adu_matches_the_simulated_camera(card_cfg: Config) -> None:
    """Mean and variance of the camera model agree with the camera simulator's samples."""
    camera = Camera(card_cfg.camera)
    photons = torch.full((200_000,), 30.0)
    adu = camera.forward(photons, torch.Generator().manual_seed(0)).double().numpy()
    mean, var = expected_adu(np.full(1, 30.0), card_cfg.camera)
    assert adu.mean() == pytest.approx(mean[0], rel=0.01)
    assert adu.var() == pytest.approx(var[0], rel=0.03)


def test_calibration_needs_enough_frames() -> None:
    with pytest.raises(ValueError, match="at least"):
        calibrate_band(np.ones(10), window_frames=20)


def test_alarm_event_on_raise_and_clear() -> None:
    alarm = MismatchAlarm(MismatchBand(0.8, 1.2, 1.0, window_frames=2))
    events = [alarm.update(i, v) for i, v in enumerate([1.0, 1.0, 2.0, 2.0, 1.0, 1.0])]
    kinds = [(e.frame, e.raised) for e in events if e is not None]
    assert kinds == [(2, True), (5, False)]
