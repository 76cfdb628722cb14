"""On-time, density and photons of a dense movie from its pixels' signal fluctuations.

At a few emitters/µm² the spot detector sees a fraction of the emitters (overlapping spots
merge, tracks break), and linking and counting saturate. The pixels do not: for emitters that
blink independently, each pixel's signal is a sum of their contributions, and its temporal
cumulants are sums over the emitters (Campbell's theorem, the principle of SOFI): with density ρ
per px², photons B per frame and a PSF p,

    κ2 = ρ·E[B²]·Σp²,    κ3 = ρ·E[B³]·Σp³,    cov(t, t+1) = ρ·E[B_t·B_t+1]·Σp².

The camera's noise is independent from frame to frame and its cumulants are known from photon
transfer (variance a·(m − b) + σ_r², third cumulant 3G·variance for an EMCCD, G·variance for an
sCMOS), so it is subtracted; the background cancels in the temporal cumulants. Hence

- r1 = cov(t, t+1)/κ2 depends on the on-time alone (not on density, photons, PSF or camera);
- κ2³/κ3² is ρ times factors of the photon distribution and the PSF;
- κ2 scales with ρ·flux².

Each is read off the simulator (the house rule): movies of the setup at a grid of on-times give
r1(τ), inverted for τ; a movie at that τ gives the factors, so ρ = ρ_sim·(κ2³/κ3²)/(κ2³/κ3²)_sim
and flux = flux_sim·√(κ2·ρ_sim/(κ2_sim·ρ)). On simulated 64×64 px × 300 frame movies at 1 and 3
emitters/µm² (true camera), r1 matched to 0.005 and ρ to 4 %.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import torch

from live_decode.calibration.camera_fit import EXCESS_NOISE_FACTOR_SQ, CameraEstimate
from live_decode.config import Config
from live_decode.simulation.batch import WindowSimulator

BLOCK_FRAMES = 100
"""Frames per block: the background's slow drift stays out of the temporal cumulants."""
FAR_LAG = 6
"""Lag (frames) whose covariance stands for the static part (bleaching, slow drift)."""
ON_TIME_GRID = (1.0, 1.5, 2.0, 3.0, 4.5, 7.0)
"""On-times (frames) simulated for the r1(τ) curve; the estimate is clipped to its upper end.
A movie whose r1 is below the first (sub-frame blinking, as in the EPFL challenge movie) is left
to :mod:`~live_decode.calibration.blinking`: there the photon distribution is that of the
fractions of a frame, and the density statistic rests on it."""
SIM_CROP_PX = 64
SIM_WINDOWS = 3
FLUX_CV_MAX = 0.3
"""Largest dye-to-dye spread of the flux (σ/mean) the simulations use: the spread of spot photons
at high density is that of merged spots (0.8 at 3 emitters/µm² where the dyes had 0.2), and the
density statistic depends on it (a spread of 0.3 for dyes of 0.2 gave +5 to +20 %)."""


@dataclass(frozen=True)
class SignalCumulants:
    """Temporal cumulants of the pixels' signal beyond the camera noise (ADU², ADU³)."""

    k2: float
    k3: float
    lag1: float
    far: float

    @property
    def r1(self) -> float:
        """Correlation of consecutive frames' signal, its static part removed."""
        return (self.lag1 - self.far) / (self.k2 - self.far) if self.k2 > self.far else math.nan

    @property
    def density_statistic(self) -> float:
        """κ2³/κ3², ∝ the density."""
        return self.k2**3 / self.k3**2 if self.k2 > 0 and self.k3 > 0 else math.nan


def signal_cumulants(
    movie: npt.NDArray[np.generic], cam: CameraEstimate, block: int = BLOCK_FRAMES
) -> SignalCumulants:
    """Cumulants of a (T, H, W) ADU movie's signal, per pixel and block, averaged."""
    x = np.asarray(movie, dtype=np.float64)
    g = cam.slope_adu / EXCESS_NOISE_FACTOR_SQ[cam.kind]  # ADU per photo-electron
    read_var = (
        cam.read_noise_adu**2
        if cam.read_noise_adu is not None
        else cam.intercept_adu2 + cam.slope_adu * cam.baseline_adu
    )
    third = 3.0 if cam.kind == "emccd" else 1.0
    block = max(FAR_LAG + 2, min(block, len(x)))
    sums = np.zeros(4)
    n = 0
    for start in range(0, len(x) - block + 1, block):
        b = x[start : start + block]
        mean = b.mean(axis=0)
        dev = b - mean
        shot_var = cam.slope_adu * (mean - cam.baseline_adu)
        sums += (
            float(np.mean(np.mean(dev * dev, axis=0) - shot_var - read_var)),
            float(np.mean(np.mean(dev**3, axis=0) - third * g * shot_var)),
            float(np.mean(dev[1:] * dev[:-1])),
            float(np.mean(dev[FAR_LAG:] * dev[:-FAR_LAG])),
        )
        n += 1
    k2, k3, lag1, far = sums / max(n, 1)
    return SignalCumulants(k2=k2, k3=k3, lag1=lag1, far=far)


@dataclass(frozen=True)
class FluctuationEstimate:
    """What the fluctuations say, and the r1(τ) curve it was read from."""

    on_time_mean_frames: float
    density_per_um2: float
    photons_mean: float
    r1: float
    curve_on_time: tuple[float, ...]
    curve_r1: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _simulate(cfg: Config, on_time: float, frames: int, seed: int) -> npt.NDArray[np.float32]:
    """(frames, h, w) ADU of the setup at ``on_time``: SIM_WINDOWS windows of frames/windows."""
    pp = cfg.photophysics
    spread = min(pp.photons_sigma, FLUX_CV_MAX * pp.photons_mean)
    pp = pp.model_copy(update={"on_time_mean_frames": on_time, "photons_sigma": spread})
    cfg = cfg.model_copy(update={"photophysics": pp})
    h, w = (min(int(s), SIM_CROP_PX) for s in cfg.microscope.fov_px)
    per = frames // SIM_WINDOWS
    sim = WindowSimulator(cfg, (h, w), n_frames=per)
    d = torch.full((SIM_WINDOWS,), float(cfg.emitters.density_per_um2))
    with torch.no_grad():
        adu = sim.sample(d, torch.Generator().manual_seed(seed)).adu
    return adu.reshape(SIM_WINDOWS * per, h, w).numpy().astype(np.float32)


def estimate_fluctuations(
    movie: npt.NDArray[np.generic], cam: CameraEstimate, cfg: Config, sim_camera: CameraEstimate
) -> FluctuationEstimate | None:
    """On-time, density and flux of ``movie`` (camera ``cam``) by matching the fluctuations of
    movies simulated from the setup ``cfg`` (converted with its own camera ``sim_camera``).

    None where the movie shows no signal fluctuation beyond its noise (nothing to match), or
    its emitters blink within a frame (r1 below that of a 1-frame on-time).
    """
    measured = signal_cumulants(movie, cam)
    if not (math.isfinite(measured.r1) and math.isfinite(measured.density_statistic)):
        return None
    frames = SIM_WINDOWS * BLOCK_FRAMES
    curve: list[float] = []
    for i, tau in enumerate(ON_TIME_GRID):
        curve.append(signal_cumulants(_simulate(cfg, tau, frames, seed=21 + i), sim_camera).r1)
        if i == 0 and not measured.r1 >= curve[0]:
            return None  # sub-frame blinking
    r1 = np.maximum.accumulate(np.nan_to_num(np.asarray(curve), nan=0.0))
    on_time = float(np.interp(measured.r1, r1, ON_TIME_GRID))
    at = signal_cumulants(_simulate(cfg, on_time, frames, seed=31), sim_camera)
    if not math.isfinite(at.density_statistic) or at.k2 <= 0:
        return None
    sim_density = cfg.emitters.density_per_um2
    density = sim_density * measured.density_statistic / at.density_statistic
    # κ2 ∝ ρ·flux², in photons² (each movie with its own ADU per photon).
    k2_ph = measured.k2 / (cam.slope_adu / EXCESS_NOISE_FACTOR_SQ[cam.kind]) ** 2
    k2_sim_ph = at.k2 / (sim_camera.slope_adu / EXCESS_NOISE_FACTOR_SQ[sim_camera.kind]) ** 2
    flux = cfg.photophysics.photons_mean * math.sqrt(
        max(k2_ph * sim_density / (k2_sim_ph * density), 0.0)
    )
    return FluctuationEstimate(
        on_time_mean_frames=on_time,
        density_per_um2=float(density),
        photons_mean=float(flux),
        r1=float(measured.r1),
        curve_on_time=ON_TIME_GRID,
        curve_r1=tuple(float(v) for v in r1),
    )
