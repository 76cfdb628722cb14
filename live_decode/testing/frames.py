"""Camera-like test movies without the simulator: a flat background and a few spots, with the
noise a real camera adds (shot noise, EM gain register, read noise, ADC).

Their photon statistics match the camera they are made for, so the model card's photon check
(:mod:`live_decode.inference.photon_stats`) passes them — unlike uniform random pixels, whose
noise no camera calibration explains. NumPy only: cheap for tests that need many small movies.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from live_decode.messages import CameraMeta

DEMO_CAMERA = CameraMeta(
    pixel_size_nm=100.0,
    baseline_adu=100.0,
    e_per_adu=45.0,
    em_gain=300.0,
    qe=0.9,
    exposure_ms=30.0,
    spurious_charge_e=0.002,
    read_noise_e=74.4,
)
"""The camera of ``configs/demo.yaml`` (and of the bundled model's card)."""


def camera_movie(
    shape: tuple[int, int, int],
    camera: CameraMeta = DEMO_CAMERA,
    *,
    background_photons: float = 60.0,
    spots_per_frame: int = 10,
    spot_photons: float = 10_000.0,
    sigma_px: float = 1.3,
    seed: int = 0,
) -> npt.NDArray[np.uint16]:
    """A (T, H, W) uint16 ADU movie of ``camera``: background plus Gaussian spots, with noise.

    The default spots are bright enough for the tests' untrained tiny networks to detect
    something in every frame.
    """
    rng = np.random.default_rng(seed)
    t, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    expected = np.full(shape, background_photons, dtype=np.float64)
    for f in range(t):
        for x0, y0 in rng.uniform(0, 1, (spots_per_frame, 2)) * (w, h):
            r2 = (xx - x0) ** 2 + (yy - y0) ** 2
            expected[f] += (
                spot_photons / (2 * np.pi * sigma_px**2) * np.exp(-r2 / (2 * sigma_px**2))
            )
    electrons = rng.poisson(expected * camera.qe + camera.spurious_charge_e).astype(np.float64)
    if camera.em_gain > 1.0:
        lit = electrons > 0
        electrons[lit] = rng.gamma(electrons[lit], camera.em_gain)
    electrons += rng.normal(0.0, camera.read_noise_e, shape)
    adu = np.round(electrons / camera.e_per_adu + camera.baseline_adu)
    return np.clip(adu, 0, 65535).astype(np.uint16)
