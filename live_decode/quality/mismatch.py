"""Model-mismatch residual: does the forward model of the network's card explain the frames?

Per frame, the network's own emitters (positions, photons) are rendered through the card's PSF,
a smooth background is added, and the camera model gives each pixel's expected ADU and its
variance — the shared forward model of :mod:`live_decode.simulation.forward`, which the wake
phase of ``live-decode adapt`` fits to real frames: for an EMCCD, electrons e = QE·photons +
spurious charge are amplified with variance
2·G²·e (the Gamma EM register doubles the Poisson variance), plus read noise and ADC rounding;
for an sCMOS, variance e + read noise². The frame's statistic is the mean squared normalised
residual ``χ²/px = mean((ADU − mean)² / var)``: ≈ 1 when the model holds, whatever the density.

A wrong camera calibration (e.g. EM gain ×2) scales the noise against what the model predicts;
a wrong PSF (e.g. σ ×1.5) leaves structured residuals at every emitter. Both raise χ²/px.

The background is the frame minus the rendered emitters, smoothed with a Gaussian much wider
than the PSF: it follows uneven illumination but cannot absorb PSF-scale residuals.

The expected band is calibrated on frames simulated from the model's own card
(:func:`calibrate_from_config`, with the ground truth standing in for an ideal network), and
widened by a relative margin for the network's own imperfection (missed dim emitters, position
errors). :class:`MismatchAlarm` raises when the running mean leaves the band.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy.ndimage import gaussian_filter

from live_decode.config import CameraConfig, Config
from live_decode.messages import CameraMeta
from live_decode.simulation.forward import CameraNoise, emitters_from_locs, expected_signal
from live_decode.simulation.psf import PSF, build_psf

FloatArray = npt.NDArray[np.float64]
BACKGROUND_SMOOTHING_PX = 5.0
"""σ of the Gaussian that smooths the background estimate, px (PSF σ is ~1.3 px)."""


def expected_adu(photons: FloatArray, camera: CameraConfig) -> tuple[FloatArray, FloatArray]:
    """Mean and variance of the camera's output in ADU for expected ``photons`` per pixel.

    The shared camera noise model (:class:`live_decode.simulation.forward.CameraNoise`).
    """
    mean, var = CameraNoise(camera).adu_mean_var(torch.from_numpy(np.asarray(photons, np.float64)))
    return mean.numpy(), var.numpy()


def to_photons(adu: FloatArray, camera: CameraConfig) -> FloatArray:
    """Inverse mean map ADU → photons (the worker's: :meth:`CameraMeta.adu_to_photons`)."""
    return np.asarray(CameraMeta.from_camera(camera).adu_to_photons(adu), dtype=np.float64)


class ResidualModel:
    """The forward model of a card: PSF + camera, with the card's pixel size.

    Parameters
    ----------
    psf : PSF
        The card's PSF (x, y in px).
    camera : CameraConfig
        The card's (or the source's reported) camera calibration.
    """

    def __init__(self, psf: PSF, camera: CameraConfig) -> None:
        self.psf = psf
        self.camera = camera
        self.noise = CameraNoise(camera)

    @classmethod
    def from_config(cls, cfg: Config) -> ResidualModel:
        return cls(build_psf(cfg.psf, cfg.camera.pixel_size_nm), cfg.camera)

    def chi2_per_px(
        self,
        adu: npt.ArrayLike,
        x_nm: npt.ArrayLike,
        y_nm: npt.ArrayLike,
        z_nm: npt.ArrayLike,
        photons: npt.ArrayLike,
    ) -> float:
        """Mean squared normalised residual of one frame.

        Parameters
        ----------
        adu : (H, W)
            The camera frame, ADU.
        x_nm, y_nm, z_nm, photons : (N,)
            The emitters the network found in it (x = column, nm), photons each.
        """
        frame = np.asarray(adu, dtype=np.float64)
        n = np.asarray(photons).size
        emitters = emitters_from_locs(
            np.zeros(n, np.int64), x_nm, y_nm, z_nm, photons, self.camera.pixel_size_nm
        )
        shape = (int(frame.shape[0]), int(frame.shape[1]))
        signal = expected_signal(self.psf, emitters, 1, shape)[0].double().numpy()
        bg = gaussian_filter(
            to_photons(frame, self.camera) - signal, BACKGROUND_SMOOTHING_PX, mode="nearest"
        )
        r2 = self.noise.chi2(torch.from_numpy(frame), torch.from_numpy(signal + bg)).numpy()
        ok = frame < self.camera.max_adu  # saturated pixels carry no noise information
        return float(r2[ok].mean()) if ok.any() else math.nan


@dataclass(frozen=True)
class MismatchBand:
    """Expected range of the running mean of χ²/px over ``window_frames`` frames."""

    lo: float
    hi: float
    centre: float
    window_frames: int

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi


def calibrate_band(
    values: npt.ArrayLike, window_frames: int = 20, n_sd: float = 6.0, rel_margin: float = 0.25
) -> MismatchBand:
    """Band from per-frame χ²/px of matched (simulated) frames.

    centre ± max(n_sd · sd of the running mean, rel_margin · centre): the relative margin
    allows for the network being less than ideal (the calibration uses the ground truth).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2 * window_frames:
        raise ValueError(
            f"calibration needs at least {2 * window_frames} frames, got {v.size}; "
            "simulate more frames or shorten the window"
        )
    c = np.cumsum(np.r_[0.0, v])
    running = (c[window_frames:] - c[:-window_frames]) / window_frames
    centre = float(np.median(running))
    half = max(n_sd * float(np.std(running)), rel_margin * centre)
    return MismatchBand(centre - half, centre + half, centre, window_frames)


def calibration_values(
    cfg: Config, n_frames: int = 200, fov_px: tuple[int, int] = (48, 48), seed: int = 12345
) -> Iterator[float]:
    """χ²/px of frames simulated with the card's config, its ground truth as ideal network."""
    from live_decode.simulation.microscope import SimulatedMicroscope

    mic_cfg = cfg.microscope.model_copy(update={"fov_px": fov_px, "seed": seed})
    sim_cfg = cfg.model_copy(update={"microscope": mic_cfg})
    mic = SimulatedMicroscope(sim_cfg)
    model = ResidualModel.from_config(cfg)
    for _ in range(n_frames):
        f = mic.next_frame()
        t = f.truth
        yield model.chi2_per_px(f.adu, t["x_nm"], t["y_nm"], t["z_nm"], t["photons"])


def calibrate_from_config(
    cfg: Config, n_frames: int = 200, fov_px: tuple[int, int] = (48, 48), seed: int = 12345
) -> MismatchBand:
    """Band from :func:`calibration_values` (simulated frames of the card)."""
    return calibrate_band(list(calibration_values(cfg, n_frames, fov_px, seed)))


@dataclass(frozen=True)
class MismatchEvent:
    """The running χ²/px left (``raised``) or re-entered the band at ``frame``."""

    frame: int
    raised: bool
    running_chi2: float
    band: MismatchBand


class MismatchAlarm:
    """Running mean of per-frame χ²/px against a calibrated band."""

    def __init__(self, band: MismatchBand) -> None:
        self.band = band
        self._values: deque[float] = deque(maxlen=band.window_frames)
        self.active = False
        self.first_raised_frame: int | None = None
        self.frames_in_alarm = 0
        self.frames_seen = 0

    @property
    def running(self) -> float:
        return float(np.mean(self._values)) if self._values else math.nan

    def update(self, frame: int, chi2_per_px: float) -> MismatchEvent | None:
        """Add one frame's value; an event when the alarm state changes."""
        if not math.isfinite(chi2_per_px):
            return None
        self._values.append(chi2_per_px)
        self.frames_seen += 1
        if len(self._values) < self.band.window_frames:
            return None
        out = not self.band.contains(self.running)
        self.frames_in_alarm += int(out)
        if out == self.active:
            return None
        self.active = out
        if out and self.first_raised_frame is None:
            self.first_raised_frame = frame
        return MismatchEvent(frame, out, self.running, self.band)
