"""A simulated SMLM acquisition: the next camera frame and its ground truth, one call at a time.

The chain per frame is the one :mod:`live_decode.simulation` composes for training, run as a
continuous acquisition instead of independent windows:

fluorophore pool (structure, 405 nm activation, blinking, bleaching) → PSF → background (a fixed
smooth pattern times a slowly drifting level) → camera (shot noise, EM gain, read noise, ADC).

The pool lives on the CPU (its state is a few ten thousand flags); rendering and the camera run on
``device``. Three independent random streams (structure + pool, background, camera) are derived
from ``cfg.microscope.seed``, so the ground truth of a seed is the same on every device.

A frame is small (a 64×64 frame takes ~3 ms on one CPU thread): a process that runs the
microscope is best served by ``torch.set_num_threads(1)``; on a busy machine torch's intra-op
threads mostly wait for each other (measured 20× slower with 2 threads beside a training run).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from live_decode.config import Config
from live_decode.messages import TRUTH_DTYPE
from live_decode.simulation.background import sample_levels, smooth_fields
from live_decode.simulation.camera import Camera
from live_decode.simulation.drift import StageDrift
from live_decode.simulation.emitters import Emitters, filament_positions, uniform_positions
from live_decode.simulation.photophysics import FluorophorePool
from live_decode.simulation.psf import PSF, build_psf, render

BACKGROUND_CORRELATION_FRAMES = 100.0
"""Correlation time of the background level's drift (an AR(1) process), in frames."""

STEADY_STATE_ON_TIMES = 10.0
"""Default warm-up, in mean on-times: the number of on emitters relaxes as exp(-t/τ)."""

GroundTruth = npt.NDArray[np.void]
"""(N,) :data:`TRUTH_DTYPE` (defined in :mod:`live_decode.messages`, re-exported here)."""


@dataclass(frozen=True)
class SimulatedFrame:
    """One camera frame of the simulated acquisition.

    Attributes
    ----------
    index : int
        Frame number, 0-based, counted from the first :meth:`SimulatedMicroscope.next_frame`.
    adu : (H, W) uint16
        Camera frame in ADU.
    truth : (N,) structured array of :data:`TRUTH_DTYPE`
        The emitters seen in this frame.
    timestamp_ns : int
        Wall clock (``time.time_ns()``) when the frame was produced, as a camera driver stamps it.
    elapsed_ms : float
        Simulated acquisition time at the start of this frame's exposure: index × frame interval.
    laser_mw : float
        405 nm power during this frame.
    density_per_um2 : float
        Emitters in this frame per µm² of the field of view (DESIGN.md §4).
    drift_nm : (dx, dy)
        Stage drift of this frame, nm: emitters appear at truth + drift (``microscope.drift``).
    """

    index: int
    adu: npt.NDArray[np.uint16]
    truth: GroundTruth
    timestamp_ns: int
    elapsed_ms: float
    laser_mw: float
    density_per_um2: float
    drift_nm: tuple[float, float] = (0.0, 0.0)


def _derived_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit seeds from one user seed."""
    state = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64)
    return [int(s) >> 1 for s in state]


class SimulatedMicroscope:
    """A simulated SMLM acquisition with a controllable 405 nm activation laser.

    Parameters
    ----------
    cfg : Config
        Camera, PSF, emitters (structure), photophysics, background and microscope (field of view,
        timing, pool density, laser, seed).
    device : str or torch.device
        Where the PSF is rendered and the camera noise drawn.
    warm_up_frames : int, optional
        Frames the pool runs before the first frame, so the first frame is at steady state. Default:
        ten mean on-times. 0 starts with every fluorophore dark.
    """

    def __init__(
        self, cfg: Config, device: torch.device | str = "cpu", warm_up_frames: int | None = None
    ) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        mic = cfg.microscope
        self._shape: tuple[int, int] = (int(mic.fov_px[0]), int(mic.fov_px[1]))
        self._pixel_size_nm = cfg.camera.pixel_size_nm
        pool_seed, bg_seed, cam_seed = _derived_seeds(mic.seed, 3)
        self._pool_gen = torch.Generator().manual_seed(pool_seed)
        self._bg_gen = torch.Generator().manual_seed(bg_seed)
        self._cam_gen = torch.Generator(self.device).manual_seed(cam_seed)
        # A fourth stream for the stage drift: the first three seeds stay those of older runs.
        self.drift = StageDrift(mic.drift, _derived_seeds(mic.seed, 4)[3])

        self.pool = FluorophorePool(
            self._fluorophore_positions(),
            cfg.photophysics,
            exposure_fraction=mic.exposure_ms / mic.frame_interval_ms,
            generator=self._pool_gen,
        )
        self.psf: PSF = build_psf(cfg.psf, self._pixel_size_nm)
        self.camera = Camera(cfg.camera)
        self._bg_field = smooth_fields(
            1, self._shape, self._pixel_size_nm, cfg.background, self._bg_gen
        )[0].to(self.device)
        self._bg_level = float(sample_levels(1, cfg.background, self._bg_gen)[0])
        self._laser_mw = mic.laser.power_mw
        self._index = 0
        if warm_up_frames is None:
            warm_up_frames = math.ceil(STEADY_STATE_ON_TIMES * cfg.photophysics.on_time_mean_frames)
        self.warm_up(warm_up_frames)

    # ------------------------------------------------------------------ properties
    @property
    def fov_px(self) -> tuple[int, int]:
        """(height, width) of a frame in px."""
        return self._shape

    @property
    def fov_area_um2(self) -> float:
        """Area of the field of view in µm²."""
        return self._shape[0] * self._shape[1] * (self._pixel_size_nm / 1000.0) ** 2

    @property
    def frame_index(self) -> int:
        """Index the next frame will have (= frames produced so far)."""
        return self._index

    @property
    def laser_power_mw(self) -> float:
        """405 nm power in mW; the setter enforces [0, ``microscope.laser.max_power_mw``]."""
        return self._laser_mw

    @laser_power_mw.setter
    def laser_power_mw(self, power_mw: float) -> None:
        max_mw = self.cfg.microscope.laser.max_power_mw
        power = float(power_mw)
        if not (math.isfinite(power) and 0.0 <= power <= max_mw):
            raise ValueError(
                f"laser power {power_mw!r} mW is outside the laser's range [0, {max_mw:g}] mW; "
                "set a power within it (microscope.laser.max_power_mw sets the upper limit)"
            )
        self._laser_mw = power

    def camera_metadata(self) -> dict[str, float | str]:
        """What a camera driver reports: units in the key names, ``kind`` 'emccd' or 'scmos'."""
        cam, mic = self.cfg.camera, self.cfg.microscope
        return {
            "kind": cam.kind,
            "pixel_size_nm": cam.pixel_size_nm,
            "baseline_adu": cam.baseline_adu,
            "e_per_adu": cam.e_per_adu,
            "em_gain": cam.em_gain if self.camera.uses_em_gain else 1.0,
            "qe": cam.qe,
            "read_noise_e": cam.read_noise_e,
            "spurious_charge_e": cam.spurious_charge_e,
            "exposure_ms": mic.exposure_ms,
            "frame_interval_ms": mic.frame_interval_ms,
        }

    # ------------------------------------------------------------------ acquisition
    def warm_up(self, frames: int) -> None:
        """Run the fluorophore pool for ``frames`` frame intervals at the current laser power.

        Nothing is rendered and the frame index does not advance; fluorophores do bleach.
        """
        if frames < 0:
            raise ValueError(f"warm-up frames must be >= 0, got {frames}")
        for _ in range(frames):
            self.pool.step(self._laser_mw)

    def next_frame(self) -> SimulatedFrame:
        """Expose one frame at the current laser power and read it out."""
        index, laser_mw = self._index, self._laser_mw
        emitters = self.pool.step(laser_mw, frame_index=0).to(self.device)
        drift_nm = self.drift.next()
        seen = emitters
        if self.drift.enabled:
            shift = torch.tensor(
                [drift_nm[0] / self._pixel_size_nm, drift_nm[1] / self._pixel_size_nm, 0.0],
                dtype=emitters.xyz.dtype,
                device=self.device,
            )
            seen = Emitters(emitters.xyz + shift, emitters.photons, emitters.frame, emitters.id)
        signal = render(self.psf, seen, 1, self._shape)[0]
        photons = signal + self._bg_level * self._bg_field
        adu = self.camera.forward(photons, self._cam_gen)
        self._drift_background()
        self._index += 1

        truth = np.zeros(len(emitters), dtype=TRUTH_DTYPE)
        xyz = emitters.xyz.cpu().numpy()
        truth["frame"] = index
        truth["id"] = emitters.id.cpu().numpy()
        truth["x_nm"] = xyz[:, 0] * self._pixel_size_nm
        truth["y_nm"] = xyz[:, 1] * self._pixel_size_nm
        truth["z_nm"] = xyz[:, 2]
        truth["photons"] = emitters.photons.cpu().numpy()
        return SimulatedFrame(
            index=index,
            adu=adu.to(torch.int32).cpu().numpy().astype(np.uint16),
            truth=truth,
            timestamp_ns=time.time_ns(),
            elapsed_ms=index * self.cfg.microscope.frame_interval_ms,
            laser_mw=laser_mw,
            density_per_um2=len(truth) / self.fov_area_um2,
            drift_nm=drift_nm,
        )

    # ------------------------------------------------------------------ internals
    def _fluorophore_positions(self) -> Tensor:
        """The pool's positions (N, 3): x, y px; z nm."""
        cfg = self.cfg
        z_range = cfg.emitters.z_range_nm
        if cfg.emitters.structure == "filaments":
            return filament_positions(
                cfg.emitters.filaments, self._shape, self._pixel_size_nm, z_range, self._pool_gen
            )
        mean = cfg.microscope.pool_per_um2 * self.fov_area_um2
        n = int(torch.poisson(torch.tensor(mean, dtype=torch.float64), generator=self._pool_gen))
        return uniform_positions(n, self._shape, z_range, self._pool_gen)

    def _drift_background(self) -> None:
        """Step the background level: mean-reverting AR(1) within ``uniform_photons`` (lo, hi).

        Stationary mean and spread are those of the uniform draw the training uses; the level is
        reflected at the bounds so it never leaves them.
        """
        lo, hi = self.cfg.background.uniform_photons
        if hi <= lo:
            return
        rho = math.exp(-1.0 / BACKGROUND_CORRELATION_FRAMES)
        mid, sd = 0.5 * (lo + hi), (hi - lo) / math.sqrt(12.0)
        noise = float(torch.randn(1, generator=self._bg_gen)[0])
        level = mid + rho * (self._bg_level - mid) + math.sqrt(1.0 - rho * rho) * sd * noise
        span = hi - lo
        # Reflect into [lo, hi] (a triangle wave of period 2·span).
        level = (level - lo) % (2.0 * span)
        self._bg_level = lo + (2.0 * span - level if level > span else level)
