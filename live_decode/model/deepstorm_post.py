"""Localizations from a Deep-STORM density image: thresholded local maxima and their centroids.

The network's output is an emitter density on the super-resolution grid (one emitter = a spike
of ``spike_height``, spread over a few pixels where the network is unsure). Each pixel's *mass*
is the (non-negative) density summed over its 3×3 neighbourhood. A pixel is a localization when
its mass is the largest within one camera pixel (a (u+1)×(u+1) window at upsampling u; ties go
to the pixel of most density) and at least ``threshold`` × ``spike_height``. Its position is the
centroid of the density in that 3×3 neighbourhood; ``prob`` is the mass in units of one emitter
(clamped to 1). Deep-STORM predicts neither photons, background nor uncertainties: those columns
are NaN; z is 0 (2-D).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from live_decode.config import DeepStormConfig
from live_decode.messages import LOC_DTYPE, Localizations

_OFFSETS = torch.tensor([-1.0, 0.0, 1.0])


def density_mass(out: Tensor) -> Tensor:
    """(B, 1, H, W) density → (B, 1, H, W) sum of its non-negative part over 3×3."""
    return F.avg_pool2d(out.clamp(min=0), 3, stride=1, padding=1, count_include_pad=True) * 9.0


def peaks(out: Tensor, cfg: DeepStormConfig) -> tuple[Tensor, Tensor]:
    """Indices (n, 3) (image, row, col) of the localizations' pixels and their masses (n,)."""
    mass = density_mass(out)
    k = cfg.upsampling + 1
    # Ties (a lone spike gives its whole 3×3 neighbourhood the same mass) go to the pixel with
    # the most density itself, then to the last pixel in raster order: one maximum per peak.
    score = mass + 1e-3 * out.clamp(min=0)
    pooled = F.max_pool2d(score, k, stride=1, padding=k // 2)
    keep = (score == pooled) & (mass >= cfg.threshold * cfg.spike_height)
    _, _, h, w = out.shape
    order = torch.arange(h * w, device=out.device, dtype=torch.float32).view(1, 1, h, w)
    ranked = torch.where(keep, order, torch.full_like(order, -1.0))
    keep = keep & (ranked == F.max_pool2d(ranked, k, stride=1, padding=k // 2))
    idx = torch.nonzero(keep[:, 0])
    return idx, mass[idx[:, 0], 0, idx[:, 1], idx[:, 2]]


def localize_density(
    out: Tensor,
    frame_indices: Tensor | np.ndarray,
    cfg: DeepStormConfig,
    pixel_size_nm: float,
) -> Localizations:
    """Localizations (LOC_DTYPE) from density images (B, 1, H·u, W·u) of the frames given."""
    idx, mass = peaks(out, cfg)
    pos = out.clamp(min=0)
    off = _OFFSETS.to(out.device, out.dtype)
    kx = off[None, :].expand(3, 3)[None, None]
    ky = off[:, None].expand(3, 3)[None, None]
    mx = F.conv2d(pos, kx.contiguous(), padding=1)  # Σ density · Δcol over 3×3
    my = F.conv2d(pos, ky.contiguous(), padding=1)
    b, r, c = idx[:, 0], idx[:, 1], idx[:, 2]
    safe = mass.clamp(min=1e-12)
    dx = mx[b, 0, r, c] / safe
    dy = my[b, 0, r, c] / safe
    sr_px = pixel_size_nm / cfg.upsampling
    x_nm = ((c.to(out.dtype) + 0.5 + dx) * sr_px).cpu().numpy()
    y_nm = ((r.to(out.dtype) + 0.5 + dy) * sr_px).cpu().numpy()
    locs = np.zeros(len(x_nm), dtype=LOC_DTYPE)
    locs["frame"] = torch.as_tensor(frame_indices).cpu().numpy()[b.cpu().numpy()]
    locs["x_nm"], locs["y_nm"] = x_nm, y_nm
    locs["prob"] = (mass / cfg.spike_height).clamp(max=1.0).cpu().numpy()
    for name in ("photons", "bg", "sigma_x_nm", "sigma_y_nm", "sigma_z_nm", "sigma_photons"):
        locs[name] = np.nan
    return locs
