"""DECODE's loss: count term + Gaussian-mixture localisation term + background term.

For each sample the network's p map defines a Gaussian mixture over emitter parameters with weights
p_k / Σp and one 4-D (photons, x, y, z) diagonal Gaussian per pixel. The count term is the Gaussian
approximation N(K; Σp, Σp(1−p)) of the Poisson-binomial number of detections, times K (so a frame
with no emitters adds nothing to it, as published). Everything is batched, masked for a variable
number of targets, and computed with log-sum-exp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from live_decode.model.network import CH_BG, CH_P, CH_PHOT, CH_SIG_PHOT

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Targets:
    """Targets of the centre frame.

    Attributes
    ----------
    params : (B, M, 4) float
        photons / photons_max, x px, y px (absolute, pixel j covers [j, j+1)), z / z_max.
    mask : (B, M) bool
        Which of the M slots hold an emitter.
    background : (B, H, W) float
        Background / bg_max.
    """

    params: Tensor
    mask: Tensor
    background: Tensor


def pixel_means(out: Tensor) -> Tensor:
    """Means of each pixel's Gaussian, (B, 4, H, W): photons, x px, y px, z (absolute xy)."""
    _, _, h, w = out.shape
    ys = torch.arange(h, device=out.device, dtype=out.dtype) + 0.5
    xs = torch.arange(w, device=out.device, dtype=out.dtype) + 0.5
    mu = out[:, CH_PHOT : CH_PHOT + 4]
    x = mu[:, 1] + xs[None, None, :]
    y = mu[:, 2] + ys[None, :, None]
    return torch.stack([mu[:, 0], x, y, mu[:, 3]], dim=1)


def gmm_loss(out: Tensor, targets: Targets, n_dims: int = 4) -> Tensor:
    """Per-sample loss (B,): −(count term + Σ log mixture) + Σ (bg − bg_target)².

    ``n_dims`` = 3 drops z (2-D models).
    """
    b = out.shape[0]
    p = out[:, CH_P].reshape(b, -1)  # (B, K)
    mu = pixel_means(out)[:, :n_dims].reshape(b, n_dims, -1)  # (B, D, K)
    sig = out[:, CH_SIG_PHOT : CH_SIG_PHOT + n_dims].reshape(b, n_dims, -1)
    mask = targets.mask
    k_true = mask.sum(1).to(out.dtype)

    p_sum = p.sum(1)
    p_var = (p * (1.0 - p)).sum(1).clamp(min=1e-6)
    count_log = -0.5 * ((k_true - p_sum) ** 2 / p_var + torch.log(p_var) + _LOG_2PI)
    count_term = count_log * k_true

    log_w = torch.log(p.clamp(min=1e-12)) - torch.log(p_sum.clamp(min=1e-12))[:, None]  # (B, K)
    t = targets.params[:, :, :n_dims]  # (B, M, D)
    # (B, M, D, K) standardised residuals; memory ~ B·M·D·K floats (fine for 40×40 crops).
    z = (t[:, :, :, None] - mu[:, None]) / sig[:, None]
    log_n = -0.5 * z**2 - torch.log(sig[:, None]) - 0.5 * _LOG_2PI
    comp = log_n.sum(2) + log_w[:, None, :]  # (B, M, K)
    gmm = torch.logsumexp(comp, dim=2)  # (B, M)
    gmm_term = (gmm * mask).sum(1)

    bg_err = ((out[:, CH_BG] - targets.background) ** 2).flatten(1).sum(1)
    return -(count_term + gmm_term) + bg_err
