"""Deep-STORM: a fully convolutional encoder–decoder from one frame to an emitter-density image.

Re-implemented from the paper's description (Nehme, Weiss, Michaeli & Shechtman, Optica 5, 458,
2018), not from its code. The camera frame is upsampled ×u (nearest neighbour: each camera pixel
becomes u × u super-resolution pixels) onto the super-resolution grid; three encoder stages
(3×3 convolution, batch norm, ReLU, 2×2 max pooling) with f, 2f, 4f filters, a 16f bottleneck,
three decoder stages (2× upsampling, 3×3 convolution, batch norm, ReLU) back to f filters and a
linear 1×1 convolution give one density value per super-resolution pixel. The paper uses f = 32
and u = 8.

The loss (:func:`deepstorm_loss`) is the paper's: the squared L2 distance between the output and
the ground-truth spikes, both blurred with a small Gaussian, plus an L1 sparsity term on the
output. Localizations are local maxima of the output (:mod:`live_decode.model.deepstorm_post`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from live_decode.config import DeepStormConfig

SIZE_MULTIPLE = 8  # camera-pixel multiple that keeps three 2× poolings exact at any upsampling
OUTPUT_CHANNELS = 1


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()
    )


class DeepStormNet(nn.Module):
    """(B, 1, H, W) scaled photons → (B, 1, H·u, W·u) emitter density (linear output).

    H and W must be multiples of 8 / u (pad with
    :func:`live_decode.model.network.pad_to_multiple` to :data:`SIZE_MULTIPLE`).
    """

    kind = "deepstorm"
    temporal_context = False

    def __init__(self, filters: int = 32, upsampling: int = 8) -> None:
        super().__init__()
        if upsampling not in (2, 4, 8):
            raise ValueError(f"Deep-STORM upsampling must be 2, 4 or 8, got {upsampling}")
        self.filters = filters
        self.upsampling = upsampling
        f = filters
        self.encoder = nn.ModuleList([_stage(1, f), _stage(f, 2 * f), _stage(2 * f, 4 * f)])
        self.bottleneck = _stage(4 * f, 16 * f)
        self.decoder = nn.ModuleList(
            [_stage(16 * f, 4 * f), _stage(4 * f, 2 * f), _stage(2 * f, f)]
        )
        self.out = nn.Conv2d(f, OUTPUT_CHANNELS, 1)
        assert self.out.bias is not None
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.out.bias)

    def upsample(self, x: Tensor) -> Tensor:
        """Camera frames (B, 1, H, W) onto the super-resolution grid (B, 1, H·u, W·u)."""
        return F.interpolate(x, scale_factor=float(self.upsampling), mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        h = self.upsample(x)
        for stage in self.encoder:
            h = F.max_pool2d(stage(h), 2)
        h = self.bottleneck(h)
        for stage in self.decoder:
            h = stage(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out: Tensor = self.out(h)
        return out


def build_deepstorm(cfg: DeepStormConfig) -> DeepStormNet:
    return DeepStormNet(cfg.filters, cfg.upsampling)


def gaussian_kernel(sigma_px: float) -> Tensor:
    """Normalised 2-D Gaussian (1, 1, k, k), k = 2·⌈3σ⌉ + 1."""
    r = max(1, math.ceil(3.0 * sigma_px))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (t / sigma_px) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def blur(image: Tensor, sigma_px: float) -> Tensor:
    """(B, 1, H, W) convolved with :func:`gaussian_kernel` (zero padding)."""
    k = gaussian_kernel(sigma_px).to(image.device, image.dtype)
    return F.conv2d(image, k, padding=k.shape[-1] // 2)


def spike_image(
    xy_px: Tensor,
    sample: Tensor,
    batch: int,
    shape_px: tuple[int, int],
    upsampling: int,
    height: float,
) -> Tensor:
    """Ground-truth spikes on the super-resolution grid, (B, 1, H·u, W·u).

    Parameters
    ----------
    xy_px : (N, 2)
        Emitter positions in camera pixels (x the column, pixel j covers [j, j+1)).
    sample : (N,) int
        The image each emitter belongs to, in [0, B).
    height : float
        Value added at each emitter's super-resolution pixel.
    """
    h, w = shape_px[0] * upsampling, shape_px[1] * upsampling
    out = torch.zeros(batch, 1, h, w, device=xy_px.device)
    col = torch.floor(xy_px[:, 0] * upsampling).long()
    row = torch.floor(xy_px[:, 1] * upsampling).long()
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    flat = out.view(-1)
    idx = (sample[inside] * h + row[inside]) * w + col[inside]
    flat.index_add_(0, idx, torch.full_like(idx, 1, dtype=out.dtype) * height)
    return out


def deepstorm_loss(out: Tensor, spikes: Tensor, cfg: DeepStormConfig) -> Tensor:
    """Per-sample loss (B,): mean (G∗out − G∗spikes)² + l1_weight · mean |out|.

    ``out`` and ``spikes`` are (B, 1, H·u, W·u); G is a Gaussian of σ = ``blur_sigma_px``.
    """
    diff = blur(out - spikes, cfg.blur_sigma_px)  # convolution is linear: G∗a − G∗b = G∗(a − b)
    l2 = (diff**2).flatten(1).mean(1)
    l1 = out.abs().flatten(1).mean(1)
    return l2 + cfg.l1_weight * l1
