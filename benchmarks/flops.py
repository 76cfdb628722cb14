"""Analytic FLOP count of :class:`DecodeNet`, read from its modules.

Convention: 2 FLOP per multiply-accumulate of every convolution (bias adds, activations,
interpolation and concatenation are left out; they are < 1 % of the total). A convolution with
``c_in → c_out`` channels, a ``k_h × k_w`` kernel and groups ``g`` costs
``2 · c_out · (c_in / g) · k_h · k_w`` FLOP per *output* pixel; a U-Net level ``l`` has
``1 / 4^l`` of the input's pixels. Figures are per input pixel of one frame, so the cost of a
frame is ``flop_per_px × H × W``.

- *cached*: the frame U-Net runs once per frame (its features are reused for t−1, t, t+1), then
  the context U-Net and the heads: the streaming worker and offline inference.
- *uncached*: DECODE's published inference, the frame U-Net on all three frames of every window.

Run ``python benchmarks/flops.py`` for a table.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from live_decode.model.network import DecodeNet, UNet


def conv_flop_per_output_px(conv: nn.Conv2d) -> int:
    """2 × MACs of one output pixel of ``conv`` (all output channels)."""
    k_h, k_w = conv.kernel_size
    return 2 * conv.out_channels * (conv.in_channels // conv.groups) * k_h * k_w


def _sequence_flop(module: nn.Module) -> int:
    """Sum over the convolutions of a sequential block that keeps the resolution."""
    return sum(conv_flop_per_output_px(m) for m in module.modules() if isinstance(m, nn.Conv2d))


def unet_flop_per_px(unet: UNet) -> float:
    """FLOP per input pixel of one U-Net pass (levels 0 … depth)."""
    depth = len(unet.down)
    total = 0.0
    for level, (down, pool) in enumerate(zip(unet.down, unet.pool, strict=True)):
        total += _sequence_flop(down) / 4**level
        assert isinstance(pool, nn.Conv2d)
        total += conv_flop_per_output_px(pool) / 4 ** (level + 1)  # strided: output level
    total += _sequence_flop(unet.base) / 4**depth
    for j, (reduce, up) in enumerate(zip(unet.reduce, unet.up, strict=True)):
        level = depth - 1 - j  # after the 2× upsampling
        total += (_sequence_flop(reduce) + _sequence_flop(up)) / 4**level
    return float(total + _sequence_flop(unet.out))


@dataclass(frozen=True)
class NetworkFlops:
    """FLOP per pixel of one frame; multiply by H × W for a frame."""

    frame_unet: float
    context: float  # context U-Net + the four heads
    n_frames: int  # frames per window: 3 with temporal context, else 1

    @property
    def cached(self) -> float:
        return self.frame_unet + self.context

    @property
    def uncached(self) -> float:
        return self.n_frames * self.frame_unet + self.context


def decode_flops(net: DecodeNet) -> NetworkFlops:
    """Analytic per-pixel FLOP of ``net``'s two stages."""
    heads = (net.head_p, net.head_mu, net.head_sigma, net.head_bg)
    context = unet_flop_per_px(net.context_unet) + sum(_sequence_flop(h) for h in heads)
    return NetworkFlops(unet_flop_per_px(net.frame_unet), context, net.n_frames)


def traced_uncached_flop(net: DecodeNet, height_px: int, width_px: int) -> int:
    """Conv FLOP of one ``net.forward`` window, counted from the output shapes on the meta device.

    A cross-check of :func:`decode_flops` (``uncached × H × W``) that needs no arithmetic of its
    own about the U-Net's levels; no memory is allocated and nothing is computed.
    """
    meta = copy.deepcopy(net).to("meta")
    total = 0

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        total += conv_flop_per_output_px(module) * output.shape[0] * output[0, 0].numel()

    for m in meta.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        meta(torch.empty(1, net.n_frames, height_px, width_px, device="meta"))
    return total


def _table() -> str:
    rows = ["| filters | frame U-Net | context + heads | cached | uncached | MFLOP/px |"]
    rows.append("| --- | --- | --- | --- | --- | --- |")
    for filters in (24, 48):
        f = decode_flops(DecodeNet(filters))
        rows.append(
            f"| {filters} | {f.frame_unet / 1e6:.3f} | {f.context / 1e6:.3f} | "
            f"{f.cached / 1e6:.3f} | {f.uncached / 1e6:.3f} | per pixel per frame |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(_table())
