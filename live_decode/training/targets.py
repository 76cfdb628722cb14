"""Training targets from simulated ground truth: the centre frame's emitters, padded per sample."""

from __future__ import annotations

import torch
from torch import Tensor

from live_decode.model.loss import Targets
from live_decode.model.scaling import Scaling
from live_decode.simulation.emitters import Emitters


def rank_within_group(group: Tensor) -> Tensor:
    """For a 1-D int tensor, each element's rank among equal values (in stable order)."""
    order = torch.argsort(group, stable=True)
    sorted_g = group[order]
    n = group.numel()
    idx = torch.arange(n, device=group.device)
    starts = torch.ones(n, dtype=torch.bool, device=group.device)
    starts[1:] = sorted_g[1:] != sorted_g[:-1]
    first = torch.cummax(torch.where(starts, idx, torch.zeros_like(idx)), 0).values
    ranks = torch.empty_like(idx)
    ranks[order] = idx - first
    return ranks


def make_targets(
    emitters: Emitters,
    background: Tensor,
    n_frames: int,
    scaling: Scaling,
    min_photons: float,
    max_targets: int,
) -> Targets:
    """Targets for a batch of windows.

    Parameters
    ----------
    emitters : Emitters
        Ground truth with image index ``b * n_frames + t``.
    background : (B, T, H, W) float
        Background photons per pixel.
    min_photons : float
        Emitters dimmer than this in the centre frame are rendered but are not targets.
    """
    b = background.shape[0]
    centre = n_frames // 2
    keep = (emitters.frame % n_frames == centre) & (emitters.photons >= min_photons)
    em = emitters.select(keep)
    sample = em.frame // n_frames
    rank = rank_within_group(sample)
    fits = rank < max_targets
    sample, rank = sample[fits], rank[fits]
    device = background.device
    params = torch.zeros(b, max_targets, 4, device=device)
    mask = torch.zeros(b, max_targets, dtype=torch.bool, device=device)
    z_scale = scaling.z_max_nm if scaling.is_3d else 1.0
    values = torch.stack(
        [
            em.photons[fits] / scaling.photons_max,
            em.xyz[fits, 0],
            em.xyz[fits, 1],
            em.xyz[fits, 2] / z_scale if scaling.is_3d else torch.zeros_like(em.photons[fits]),
        ],
        dim=1,
    )
    params[sample, rank] = values
    mask[sample, rank] = True
    used = int(mask.sum(1).max()) if mask.numel() else 0
    used = max(used, 1)
    return Targets(
        params=params[:, :used],
        mask=mask[:, :used],
        background=background[:, centre] / scaling.bg_max,
    )
