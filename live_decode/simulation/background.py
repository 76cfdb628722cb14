"""Background light: a uniform level per frame plus a smooth spatial variation, in photons/px."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from live_decode.config import BackgroundConfig


def sample_levels(
    n: int, cfg: BackgroundConfig, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """Uniform background levels (n,), photons/px/frame, drawn from ``cfg.uniform_photons``."""
    lo, hi = cfg.uniform_photons
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


def smooth_fields(
    n: int,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    cfg: BackgroundConfig,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Relative background patterns (n, H, W) with mean ~1, values in [1 - a, 1 + a].

    Each pattern is the mean of three plane waves with wavelength ~ 2π·scale and random direction
    and phase (uneven illumination, out-of-focus light); a = ``variation_fraction``.
    """
    h, w = shape_px
    a = cfg.variation_fraction
    if a == 0:
        return torch.ones(n, h, w, device=device)
    scale_px = cfg.variation_scale_um * 1000.0 / pixel_size_nm
    yy, xx = torch.meshgrid(
        torch.arange(h, device=device, dtype=torch.float32) + 0.5,
        torch.arange(w, device=device, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    n_waves = 3
    theta = torch.rand(n, n_waves, 1, 1, generator=generator, device=device) * 2 * math.pi
    phase = torch.rand(n, n_waves, 1, 1, generator=generator, device=device) * 2 * math.pi
    k = 1.0 / scale_px
    arg = k * (torch.cos(theta) * xx + torch.sin(theta) * yy) + phase
    return 1.0 + a * torch.cos(arg).mean(dim=1)


def background(levels: Tensor, fields: Tensor) -> Tensor:
    """Background photons (n, H, W) from levels (n,) and relative fields (n, H, W)."""
    return levels[:, None, None] * fields
