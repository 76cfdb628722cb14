"""Training data: independent windows of frames simulated on the fly (each sample used once)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from live_decode.config import Config, StructuredSamplesConfig
from live_decode.simulation.background import sample_levels, smooth_fields
from live_decode.simulation.camera import Camera
from live_decode.simulation.emitters import Emitters
from live_decode.simulation.photophysics import blinking_windows
from live_decode.simulation.psf import PSF, build_psf, render
from live_decode.simulation.structures import StructuredPositions, window_kinds


@dataclass(frozen=True)
class WindowBatch:
    """B windows of T frames.

    Attributes
    ----------
    adu : (B, T, H, W) float
        Camera frames in ADU.
    background : (B, T, H, W) float
        The background that was added, photons/px.
    emitters : Emitters
        Ground truth; ``frame`` is the image index b * T + t.
    n_frames : int
        T.
    """

    adu: Tensor
    background: Tensor
    emitters: Emitters
    n_frames: int


class WindowSimulator:
    """Simulates :class:`WindowBatch` es from a config: emitters → PSF → background → camera."""

    def __init__(
        self,
        cfg: Config,
        shape_px: tuple[int, int],
        n_frames: int = 3,
        device: torch.device | str = "cpu",
        psf: PSF | None = None,
    ) -> None:
        self.cfg = cfg
        self.shape_px = shape_px
        self.n_frames = n_frames
        self.device = torch.device(device)
        self.psf = psf if psf is not None else build_psf(cfg.psf, cfg.camera.pixel_size_nm)
        self.camera = Camera(cfg.camera)

    def sample(
        self,
        densities_per_um2: Tensor,
        generator: torch.Generator,
        structured: StructuredSamplesConfig | None = None,
    ) -> WindowBatch:
        """One batch, one window per entry of ``densities_per_um2`` (B,).

        With ``structured`` (and its ``fraction`` > 0), that share of the windows puts its
        emitters on filaments or in clusters (same mean density); without, all are uniform.
        """
        cfg, t = self.cfg, self.n_frames
        b = densities_per_um2.shape[0]
        positions = None
        if structured is not None and structured.fraction > 0:
            kinds = window_kinds(b, structured, generator, self.device)
            positions = StructuredPositions(
                kinds,
                structured,
                self.shape_px,
                cfg.camera.pixel_size_nm,
                cfg.emitters.z_range_nm,
                generator,
            )
        emitters = blinking_windows(
            densities_per_um2.to(self.device),
            t,
            self.shape_px,
            cfg.camera.pixel_size_nm,
            cfg.emitters.z_range_nm,
            cfg.photophysics,
            generator,
            positions,
        )
        signal = render(self.psf, emitters, b * t, self.shape_px).view(b, t, *self.shape_px)
        # One level and pattern per window: background changes slowly compared with 3 frames.
        levels = sample_levels(b, cfg.background, generator, self.device)
        fields = smooth_fields(
            b, self.shape_px, cfg.camera.pixel_size_nm, cfg.background, generator, self.device
        )
        bg = (levels[:, None, None] * fields)[:, None].expand(b, t, *self.shape_px)
        adu = self.camera.forward(signal + bg, generator)
        return WindowBatch(adu=adu, background=bg.contiguous(), emitters=emitters, n_frames=t)

    def sample_uniform(
        self,
        batch_size: int,
        density_range: tuple[float, float],
        generator: torch.Generator,
        structured: StructuredSamplesConfig | None = None,
    ) -> WindowBatch:
        """A batch whose per-window densities are uniform on ``density_range``."""
        lo, hi = density_range
        d = lo + (hi - lo) * torch.rand(batch_size, generator=generator, device=self.device)
        return self.sample(d, generator, structured)
