"""One camera vocabulary: CameraMeta.from_config and the one ADU → photon conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_decode.config import DEMO_CONFIG, config_from_dict, load_config
from live_decode.messages import CameraMeta
from live_decode.simulation.camera import Camera
from live_decode.sources.base import camera_from_config
from live_decode.sources.simulated import SimulatedSource


@pytest.mark.parametrize("kind", ["emccd", "scmos"])
def test_the_conversion_inverts_the_simulated_camera_on_average(kind: str) -> None:
    extra = {"em_gain": 1.0, "read_noise_e": 1.6, "e_per_adu": 0.5} if kind == "scmos" else {}
    cfg = config_from_dict({"camera": {"kind": kind, **extra}})
    meta = CameraMeta.from_config(cfg)
    photons = torch.full((200_000,), 50.0)
    adu = Camera(cfg.camera).forward(photons, torch.Generator().manual_seed(1))
    back = meta.adu_to_photons(adu.double())
    # Mean over 2e5 pixels: EM gain noise (excess factor √2) and read noise average out.
    sem = float(back.std()) / np.sqrt(back.numel())
    assert abs(float(back.mean()) - 50.0) < 5 * sem + 0.05


def test_numpy_torch_and_numbers_convert_alike() -> None:
    meta = CameraMeta.from_config(load_config(DEMO_CONFIG))
    adu = np.array([[100.0, 400.0], [2500.0, 90.0]])
    as_numpy = meta.adu_to_photons(adu)
    as_torch = meta.adu_to_photons(torch.from_numpy(adu)).numpy()
    np.testing.assert_array_equal(as_numpy, as_torch)
    assert meta.adu_to_photons(400.0) == pytest.approx(float(as_numpy[0, 1]))
    assert Camera(load_config(DEMO_CONFIG).camera).to_photons(torch.from_numpy(adu)).numpy() == (
        pytest.approx(as_numpy)
    )


def test_every_source_of_camera_metadata_agrees() -> None:
    cfg = load_config(DEMO_CONFIG)
    meta = CameraMeta.from_config(cfg)
    assert camera_from_config(cfg) == meta
    simulated = SimulatedSource(cfg, max_frames=1).camera
    assert simulated == CameraMeta(**{**meta.__dict__, "extra": simulated.extra})
