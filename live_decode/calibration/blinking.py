"""On-time and photon flux from the movie's temporal correlation (dense or sub-frame blinking).

Linking spots frame to frame measures the on-time well while emitters are sparse and stay on for
frames. At high density the detector sees only a fraction of the emitters (tracks break), and an
on-time under one frame cannot be told from one frame: linking then says nothing. The pixels say
more: an emitter on in frame t and t+1 makes the two frames correlate, a static structure makes
all frames correlate alike. So the statistic is the *excess* correlation of consecutive frames
over that of distant ones (each pixel's temporal median removed), which needs no detection.

The statistic also depends on the photons, the PSF and the noise, so it is read off the
simulator itself: movies of the calibrated setup at a grid of on-times, each with the flux that
reproduces the movie's median spot photons, give a curve excess(τ), which is inverted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import torch

from live_decode.calibration.camera_fit import CameraEstimate, to_photons
from live_decode.calibration.spots import find_spots
from live_decode.config import Config

ON_TIME_GRID = (0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 4.0)
"""On-times (frames) simulated for the curve; the estimate is interpolated, clipped to its ends."""
FAR_LAGS = (5, 6, 7, 8)
"""Lags (frames) whose correlation stands for the static part (structure, background pattern)."""
SIM_FRAMES = 40
SIM_WINDOWS = 3
SIM_CROP_PX = 48


@dataclass(frozen=True)
class BlinkingEstimate:
    """The temporal-correlation estimate and the curve it was read from."""

    on_time_mean_frames: float
    photons_mean: float
    excess_correlation: float
    curve_on_time: tuple[float, ...]
    curve_excess: tuple[float, ...]
    curve_photons_mean: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def excess_correlation(photons: npt.NDArray[np.floating], window: int | None = None) -> float:
    """Correlation of frames t and t+1 minus that of frames :data:`FAR_LAGS` apart.

    ``photons`` is (T, H, W); with ``window`` the movie is cut into independent runs of that many
    frames (simulated windows), and no pair spans two runs.
    """
    x = np.asarray(photons, dtype=np.float64)
    runs = [x] if window is None else [x[i : i + window] for i in range(0, len(x), window)]
    runs = [r - np.median(r, axis=0) for r in runs if len(r) > max(FAR_LAGS)]
    if not runs:
        raise ValueError(f"need more than {max(FAR_LAGS)} frames for the temporal correlation")

    def corr(lag: int) -> float:
        a = np.concatenate([r[:-lag].ravel() for r in runs])
        b = np.concatenate([r[lag:].ravel() for r in runs])
        return float(np.corrcoef(a, b)[0, 1])

    return corr(1) - float(np.mean([corr(k) for k in FAR_LAGS]))


def _simulate(cfg: Config, density: float, seed: int) -> npt.NDArray[np.float32]:
    from live_decode.simulation.batch import WindowSimulator

    h, w = (min(int(s), SIM_CROP_PX) for s in cfg.microscope.fov_px)
    sim = WindowSimulator(cfg, (h, w), n_frames=SIM_FRAMES)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        adu = sim.sample(torch.full((SIM_WINDOWS,), float(density)), gen).adu
    return adu.reshape(SIM_WINDOWS * SIM_FRAMES, h, w).numpy().astype(np.float32)


def _with_photophysics(cfg: Config, on_time: float, flux: float, spread: float) -> Config:
    pp = cfg.photophysics.model_copy(
        update={
            "on_time_mean_frames": on_time,
            "photons_mean": flux,
            "photons_sigma": spread * flux,
        }
    )
    return cfg.model_copy(update={"photophysics": pp})


def _spot_median(adu: npt.NDArray[np.float32], cam: CameraEstimate, f2: float) -> float:
    spots = find_spots(to_photons(adu, cam), f2, read_var=cam.read_var_photons())
    ph = spots["photons"][spots["ok"]]
    return float(np.median(ph)) if len(ph) >= 10 else float("nan")


def estimate_blinking(
    cfg: Config,
    sim_camera: CameraEstimate,
    excess_noise_f2: float,
    movie_photons: npt.NDArray[np.floating],
    spot_photons_median: float,
    density_per_um2: float,
) -> BlinkingEstimate:
    """On-time and flux of ``cfg``'s setup that reproduce the movie's temporal correlation.

    ``movie_photons`` (T, H, W) is the movie converted with the calibrated camera,
    ``spot_photons_median`` the median photons of its fitted spots; ``sim_camera`` converts the
    simulations (the setup's own camera), ``excess_noise_f2`` is the detector's noise factor.
    """
    target = excess_correlation(movie_photons)
    pp = cfg.photophysics
    spread = pp.photons_sigma / pp.photons_mean if pp.photons_mean > 0 else 0.3
    excess, fluxes = [], []
    for i, tau in enumerate(ON_TIME_GRID):
        # The flux whose spots look like the movie's: spot photons ≈ flux × visible on-time,
        # so start from that and correct it twice by the simulated spots' median.
        flux = spot_photons_median / min(tau, 1.0)
        for _ in range(2):
            adu = _simulate(_with_photophysics(cfg, tau, flux, spread), density_per_um2, 31 + i)
            median = _spot_median(adu, sim_camera, excess_noise_f2)
            if not np.isfinite(median) or median <= 0:
                break
            flux *= spot_photons_median / median
        adu = _simulate(_with_photophysics(cfg, tau, flux, spread), density_per_um2, 31 + i)
        excess.append(excess_correlation(to_photons(adu, sim_camera), window=SIM_FRAMES))
        fluxes.append(flux)
    e = np.maximum.accumulate(np.asarray(excess))  # the curve rises with τ; flatten noise
    t = np.asarray(ON_TIME_GRID)
    on_time = float(np.interp(target, e, t)) if target > e[0] else float(t[0])
    flux = float(np.interp(on_time, t, np.asarray(fluxes)))
    return BlinkingEstimate(
        on_time_mean_frames=on_time,
        photons_mean=flux,
        excess_correlation=target,
        curve_on_time=tuple(float(v) for v in t),
        curve_excess=tuple(float(v) for v in excess),
        curve_photons_mean=tuple(float(v) for v in fluxes),
    )
