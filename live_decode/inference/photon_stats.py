"""Is the camera calibration right? The noise of one frame's background against its level.

For a pixel that sees λ photons on average, converted to photons with the camera calibration in
use (:meth:`~live_decode.messages.CameraMeta.adu_to_photons`), the noise variance is

    var = F²·(QE·λ + c)/QE² + (σ_r / (M·QE))² + q²/12,

with F² the excess noise factor (2 behind an EM gain register, else 1), c the spurious charge
(e⁻), σ_r the read noise (e⁻), M the EM gain and q the photons of one ADU. A calibration whose
ADU per photon is r times too small (a wrong ``e_per_adu`` or EM gain) makes the converted level
r times too large and the variance r² times: the ratio of the measured excess variance to the
one the calibration predicts, :attr:`PhotonStatistics.gain_ratio`, *is* r. It is measured on
the dimmest quarter of one frame (by each pixel's 7×7 neighbourhood: away from spots), from the
second difference of horizontally adjacent pixels, which the smooth background pattern (and a
spot's far wing) leaves unchanged. A wrong baseline shifts the level and moves the ratio too,
so a ratio far from 1 means "the gain or the baseline is wrong"; either breaks the network.

This is what ``live-decode calibrate`` measures from a whole movie (the photon-transfer curve),
cut down to the one frame the model card check sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from live_decode.messages import CameraMeta

MIN_PAIRS = 200
"""Pixel triples needed for a ratio worth judging (its relative error is then ≈ 10 %): frames
of about 30×30 px and more."""
MIN_SHOT_SHARE = 0.5
"""The shot noise must be at least this share of the predicted variance: where read noise
dominates (a dark sCMOS frame), the level says little about the gain."""
NEIGHBOURHOOD_PX = 7
DIM_QUANTILE = 0.25
"""The pixels judged: the dimmest quarter of the frame by their 7×7 neighbourhood. Spot wings
reach into a dimmest half at 8 emitters/µm²; the dimmest quarter holds to ≥ 16 µm⁻² (measured on
the demo setup: ratio 0.97–1.10)."""


@dataclass(frozen=True)
class PhotonStatistics:
    """Background level and noise of one frame in photons, and what the calibration predicts.

    ``gain_ratio`` > 1: the camera gives ``gain_ratio`` times more ADU per photon than the
    calibration says (the frame's photons come out too many and too noisy); NaN: inconclusive.
    """

    level_photons: float
    variance_photons2: float
    predicted_variance_photons2: float
    gain_ratio: float
    n_pairs: int

    @property
    def conclusive(self) -> bool:
        return math.isfinite(self.gain_ratio)


def excess_noise_sq(camera: CameraMeta) -> float:
    """F²: 2 behind an EM gain register at gain > 1, else 1."""
    return 2.0 if camera.em_gain > 1.0 else 1.0


def adu_per_photon(camera: CameraMeta) -> float:
    """ADU per detected photon of the calibration: EM gain × QE / (e⁻ per ADU)."""
    return camera.em_gain * camera.qe / camera.e_per_adu


def photon_statistics(camera: CameraMeta, frame: npt.NDArray[np.generic]) -> PhotonStatistics:
    """Measure the background statistics of ``frame`` (H, W) ADU converted with ``camera``."""
    nan = math.nan
    pixels = np.asarray(frame, dtype=np.float64)
    if pixels.ndim != 2 or min(pixels.shape) < 2 * NEIGHBOURHOOD_PX:
        return PhotonStatistics(nan, nan, nan, nan, 0)
    ph = camera.adu_to_photons(pixels)
    smooth = ndimage.uniform_filter(ph, size=NEIGHBOURHOOD_PX, mode="reflect")
    dim = smooth <= np.quantile(smooth, DIM_QUANTILE)
    triple = dim[:, 2:] & dim[:, 1:-1] & dim[:, :-2]
    n = int(triple.sum())
    if n == 0:
        return PhotonStatistics(nan, nan, nan, nan, 0)
    # x[j−1] − 2x[j] + x[j+1]: variance 6σ² for white noise; a linear gradient cancels.
    second = (ph[:, 2:] - 2.0 * ph[:, 1:-1] + ph[:, :-2])[triple]
    level = float(np.mean(ph[:, 1:-1][triple]))
    var = float(np.mean(second * second) / 6.0)
    f2, qe = excess_noise_sq(camera), camera.qe
    read = (camera.read_noise_e / (camera.em_gain * qe)) ** 2
    quant = (1.0 / adu_per_photon(camera)) ** 2 / 12.0
    shot = f2 * (qe * max(level, 0.0) + camera.spurious_charge_e) / qe**2
    predicted = shot + read + quant
    ratio = nan
    if n >= MIN_PAIRS and var > 0 and shot >= MIN_SHOT_SHARE * predicted:
        ratio = (var - read - quant) / shot
    return PhotonStatistics(level, var, predicted, ratio, n)
