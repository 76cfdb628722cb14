"""Raw movies of setups unlike any shipped config, for the calibration tests (plain arrays)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from live_decode.config import Config, config_from_dict
from live_decode.simulation.microscope import SimulatedMicroscope

CAMERAS = {
    "emccd": dict(
        kind="emccd",
        pixel_size_nm=117.0,
        baseline_adu=480.0,
        e_per_adu=12.0,
        em_gain=150.0,
        qe=0.9,
        read_noise_e=60.0,
        spurious_charge_e=0.0,
    ),
    "scmos": dict(
        kind="scmos",
        pixel_size_nm=108.0,
        baseline_adu=100.0,
        e_per_adu=0.46,
        em_gain=1.0,
        qe=0.8,
        read_noise_e=1.6,
        spurious_charge_e=0.0,
    ),
}
SIGMA_NM = {"emccd": 150.0, "scmos": 120.0}


def simulate(
    kind: str,
    frames: int = 300,
    laser_mw: float = 6.0,
    seed: int = 2,
    fov_px: int = 64,
    background_photons: tuple[float, float] = (30.0, 60.0),
    read_noise_e: float | None = None,
    structure: str = "uniform",
) -> tuple[Config, npt.NDArray[np.uint16], float]:
    """(config, movie (frames, fov_px, fov_px) ADU, true emitters/µm²/frame) of camera ``kind``;
    at the default 6 mW about 1 emitter/µm²/frame, ~4 at 30 mW."""
    cfg = config_from_dict(
        {
            "camera": {
                **CAMERAS[kind],
                **({} if read_noise_e is None else {"read_noise_e": read_noise_e}),
            },
            "psf": {"kind": "gaussian", "sigma_nm": SIGMA_NM[kind]},
            "emitters": {"structure": structure},
            "photophysics": {"photons_mean": 2000, "photons_sigma": 400, "on_time_mean_frames": 3},
            "background": {
                "uniform_photons": list(background_photons),
                "variation_fraction": 0.3,
            },
            "microscope": {
                "fov_px": [fov_px, fov_px],
                "seed": seed,
                "laser": {"power_mw": laser_mw},
            },
        }
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small frames: fastest on one thread (restored: no leak to others)
    try:
        mic = SimulatedMicroscope(cfg)
        movie, n = [], 0
        for _ in range(frames):
            f = mic.next_frame()
            movie.append(f.adu)
            n += len(f.truth)
    finally:
        torch.set_num_threads(threads)
    return cfg, np.stack(movie), n / frames / cfg.fov_area_um2
