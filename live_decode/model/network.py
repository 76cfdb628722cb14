"""DECODE's network: a frame U-Net shared across t-1, t, t+1, a temporal-context U-Net, four heads.

Re-implemented from the paper's description (Speiser et al., Nat. Methods 2021) and the published
architecture facts: depth-2 U-Nets with ELU, strided-conv pooling, nearest upsampling; ten output
maps per pixel. The two stages are separate methods so a streaming worker can cache each frame's
features and run the frame U-Net once per frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_OUT = 10
# Output channels (after activations), in order.
CH_P, CH_PHOT, CH_X, CH_Y, CH_Z = 0, 1, 2, 3, 4
CH_SIG_PHOT, CH_SIG_X, CH_SIG_Y, CH_SIG_Z, CH_BG = 5, 6, 7, 8, 9
SIGMA_SCALE = 3.0
SIGMA_EPS = 1e-3
P_LOGIT_CLAMP = 8.0
P_INIT_BIAS = -6.0
SIZE_MULTIPLE = 4  # two 2× poolings


def _conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(_conv(c_in, c_out), nn.ELU(), _conv(c_out, c_out), nn.ELU())


class UNet(nn.Module):
    """Depth-2 U-Net, same padding: (B, c_in, H, W) → (B, c_out, H, W); H, W multiples of 4."""

    def __init__(self, c_in: int, c_out: int, filters: int, depth: int = 2) -> None:
        super().__init__()
        widths = [filters * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = c_in
        for w in widths[:-1]:
            self.down.append(_DoubleConv(c, w))
            self.pool.append(nn.Conv2d(w, w, 2, stride=2))
            c = w
        self.base = _DoubleConv(c, widths[-1])
        self.reduce = nn.ModuleList()
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.reduce.append(nn.Conv2d(2 * w, w, 1))
            self.up.append(_DoubleConv(2 * w, w))
        self.out = nn.Conv2d(widths[0], c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for down, pool in zip(self.down, self.pool, strict=True):
            x = down(x)
            skips.append(x)
            x = pool(x)
        x = self.base(x)
        for reduce, up, skip in zip(self.reduce, self.up, reversed(skips), strict=True):
            x = reduce(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = up(torch.cat([x, skip], dim=1))
        out: Tensor = self.out(x)
        return out


class _Head(nn.Sequential):
    def __init__(self, filters: int, c_out: int) -> None:
        super().__init__(_conv(filters, filters), nn.ELU(), nn.Conv2d(filters, c_out, 1))


class DecodeNet(nn.Module):
    """Two stacked U-Nets and four heads (p; photons, x, y, z; their σ; background).

    Input: frames in scaled photon units, (B, 3, H, W) for t-1, t, t+1 (or (B, 1, H, W) for a
    single-frame model). Output: (B, 10, H, W) after activations: p ∈ (0, 1); photons, bg ∈ (0, 1)
    (fractions of their scale); Δx, Δy ∈ (-1, 1) px from the pixel centre; z ∈ (-1, 1) of z scale;
    σ ∈ (0.001, 3.001) in those units.
    """

    kind = "decode"

    def __init__(self, filters: int, temporal_context: bool = True, predict_z: bool = True) -> None:
        super().__init__()
        self.filters = filters
        self.temporal_context = temporal_context
        self.predict_z = predict_z
        self.frame_unet = UNet(1, filters, filters)
        n_ctx = 3 if temporal_context else 1
        self.context_unet = UNet(n_ctx * filters, filters, filters)
        self.head_p = _Head(filters, 1)
        self.head_mu = _Head(filters, 4)
        self.head_sigma = _Head(filters, 4)
        self.head_bg = _Head(filters, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        last_p = self.head_p[-1]
        assert isinstance(last_p, nn.Conv2d) and last_p.bias is not None
        nn.init.kaiming_normal_(last_p.weight, mode="fan_in", nonlinearity="linear")
        nn.init.constant_(last_p.bias, P_INIT_BIAS)  # start with p ≈ 0.0025 everywhere

    @property
    def n_frames(self) -> int:
        return 3 if self.temporal_context else 1

    def frame_features(self, frame: Tensor) -> Tensor:
        """Frame U-Net: (B, 1, H, W) scaled photons → (B, F, H, W) features."""
        return F.elu(self.frame_unet(frame))

    def context(self, f_prev: Tensor | None, f_cur: Tensor, f_next: Tensor | None) -> Tensor:
        """Temporal-context U-Net + heads on cached features → (B, 10, H, W) outputs."""
        if self.temporal_context:
            if f_prev is None or f_next is None:
                raise ValueError("a temporal-context model needs the features of t-1 and t+1")
            x = torch.cat([f_prev, f_cur, f_next], dim=1)
        else:
            x = f_cur
        h = F.elu(self.context_unet(x))
        p_logit = self.head_p(h).clamp(-P_LOGIT_CLAMP, P_LOGIT_CLAMP)
        mu = self.head_mu(h)
        sig = self.head_sigma(h)
        bg = self.head_bg(h)
        phot = torch.sigmoid(mu[:, :1])
        xyz = torch.tanh(mu[:, 1:])
        sigma = SIGMA_SCALE * torch.sigmoid(sig) + SIGMA_EPS
        if not self.predict_z:
            # 2-D model: z is not learnt; fixed mean 0 and a neutral σ keep the channel layout.
            xyz = torch.cat([xyz[:, :2], torch.zeros_like(xyz[:, 2:])], dim=1)
            sigma = torch.cat([sigma[:, :3], torch.full_like(sigma[:, 3:], 0.1)], dim=1)
        return torch.cat([torch.sigmoid(p_logit), phot, xyz, sigma, torch.sigmoid(bg)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, H, W) scaled photons, T = 3 (or 1 for a single-frame model) → (B, 10, H, W)."""
        b, t, h, w = x.shape
        if self.temporal_context:
            if t != 3:
                raise ValueError(f"expected 3 frames (t-1, t, t+1), got {t}")
            feats = self.frame_features(x.reshape(b * 3, 1, h, w)).view(b, 3, -1, h, w)
            return self.context(feats[:, 0], feats[:, 1], feats[:, 2])
        centre = x[:, t // 2 : t // 2 + 1]
        return self.context(None, self.frame_features(centre), None)


def pad_to_multiple(x: Tensor, multiple: int = SIZE_MULTIPLE) -> Tensor:
    """Pad (…, H, W) at the bottom and right (replicating the edge) to multiples of ``multiple``.

    Padding only at the far edges keeps pixel (i, j) of the input at (i, j), so coordinates need no
    correction; crop the outputs back with ``[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    flat = x.reshape(-1, 1, h, w)
    padded = F.pad(flat, (0, pw, 0, ph), mode="replicate")
    return padded.reshape(*x.shape[:-2], h + ph, w + pw)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
