"""From output maps to localizations: DECODE's spatial integration, on tensors (CPU or GPU).

Candidates are 3×3 local maxima of the thresholded p map, plus non-maximal pixels whose own p
exceeds ``split_threshold`` (a second emitter next to the first). A candidate's probability is
the sum of p over itself and its 4-neighbourhood, clamped to 1, then thresholded again at
``raw_threshold``. Offsets, photons, σ and background are read at the candidate pixel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from live_decode.config import PostprocessConfig
from live_decode.messages import LOC_DTYPE, Localizations
from live_decode.model import network as ch
from live_decode.model.scaling import Scaling

LOC_COLUMNS_AFTER_FRAME = (
    "x_nm",
    "y_nm",
    "z_nm",
    "photons",
    "bg",
    "prob",
    "sigma_x_nm",
    "sigma_y_nm",
    "sigma_z_nm",
    "sigma_photons",
)
_PLUS = torch.tensor([[0.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])


def integrate_probability(p: Tensor, raw_threshold: float, split_threshold: float) -> Tensor:
    """Integrated detection probability per pixel, (B, H, W); 0 where no candidate."""
    p4 = p[:, None]
    clipped = torch.where(p4 > raw_threshold, p4, torch.zeros_like(p4))
    pooled = F.max_pool2d(clipped, 3, stride=1, padding=1)
    is_max = (clipped == pooled) & (clipped > 0)
    summed = F.conv2d(p4, _PLUS.to(p.device, p.dtype)[None, None], padding=1)
    second = (~is_max) & (p4 > split_threshold)
    return (summed * (is_max | second)).clamp(max=1.0)[:, 0]


def detections(out: Tensor, cfg: PostprocessConfig) -> tuple[Tensor, Tensor]:
    """Indices (n, 3) of detected pixels (batch, row, col) and their probabilities (n,)."""
    p_int = integrate_probability(out[:, ch.CH_P], cfg.raw_threshold, cfg.split_threshold)
    idx = torch.nonzero(p_int >= cfg.raw_threshold)
    return idx, p_int[idx[:, 0], idx[:, 1], idx[:, 2]]


def localize(
    out: Tensor,
    frame_indices: Tensor | np.ndarray,
    cfg: PostprocessConfig,
    scaling: Scaling,
    pixel_size_nm: float,
) -> Localizations:
    """Localizations (LOC_DTYPE) from network outputs.

    Parameters
    ----------
    out : (B, 10, H, W)
        Network output after activations.
    frame_indices : (B,) int
        The movie frame index of each output map.
    """
    idx, prob = detections(out, cfg)
    bi, r, c = idx[:, 0], idx[:, 1], idx[:, 2]
    vals = out[bi, :, r, c].float()  # (n, 10): the only device→host copy is this table
    px = pixel_size_nm
    z_scale = scaling.z_max_nm if scaling.is_3d else 0.0
    cols = (
        torch.stack(
            [
                (c.to(vals.dtype) + 0.5 + vals[:, ch.CH_X]) * px,
                (r.to(vals.dtype) + 0.5 + vals[:, ch.CH_Y]) * px,
                vals[:, ch.CH_Z] * z_scale,
                vals[:, ch.CH_PHOT] * scaling.photons_max,
                vals[:, ch.CH_BG] * scaling.bg_max,
                prob.float(),
                vals[:, ch.CH_SIG_X] * px,
                vals[:, ch.CH_SIG_Y] * px,
                vals[:, ch.CH_SIG_Z] * z_scale,
                vals[:, ch.CH_SIG_PHOT] * scaling.photons_max,
            ],
            dim=1,
        )
        .cpu()
        .numpy()
    )
    frames = torch.as_tensor(frame_indices).cpu().numpy()[bi.cpu().numpy()]
    locs = np.zeros(len(cols), dtype=LOC_DTYPE)
    locs["frame"] = frames
    for i, name in enumerate(LOC_COLUMNS_AFTER_FRAME):
        locs[name] = cols[:, i]
    return locs
