"""The localizer: camera frames in ADU → photons → network (two stages) → localizations.

Both the streaming worker and offline inference use this one object, so they give the same
results. Photon conversion runs on the device; on CUDA the network runs under bf16 autocast.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from live_decode.config import PostprocessConfig
from live_decode.messages import CameraMeta, Localizations
from live_decode.model.checkpoint import ModelCard
from live_decode.model.network import DecodeNet, pad_to_multiple
from live_decode.model.postprocess import localize


class Localizer:
    """A loaded model ready to localize frames on ``device``."""

    def __init__(
        self,
        net: DecodeNet,
        card: ModelCard,
        device: torch.device,
        postprocess: PostprocessConfig | None = None,
        amp: bool = True,
    ) -> None:
        self.net = net.to(device).eval()
        self.card = card
        self.device = device
        self.config = card.parsed_config
        self.scaling = card.parsed_scaling
        self.postprocess = postprocess or self.config.postprocess
        self.pixel_size_nm = self.config.camera.pixel_size_nm
        self.amp = amp and device.type == "cuda"

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def to_input(self, adu: np.ndarray | Tensor, cam: CameraMeta) -> Tensor:
        """Scaled network input (N, 1, H', W') on the device from ADU frames (N, H, W).

        H', W' are padded up to multiples of 4 (bottom/right, edge replicated).
        """
        x = torch.as_tensor(adu).to(self.device, non_blocking=True).float()
        photons = (
            (x - cam.baseline_adu) * (cam.e_per_adu / cam.em_gain) - cam.spurious_charge_e
        ) / cam.qe
        return pad_to_multiple(self.scaling.scale_input(photons)[:, None])

    @torch.no_grad()
    def features(self, x: Tensor) -> Tensor:
        """Frame U-Net features (N, F, H', W') of scaled inputs (N, 1, H', W')."""
        with self._autocast():
            return self.net.frame_features(x)

    @torch.no_grad()
    def outputs(
        self, f_prev: Tensor, f_cur: Tensor, f_next: Tensor, shape_px: tuple[int, int]
    ) -> Tensor:
        """Output maps (N, 10, H, W), cropped back to the frame size, float32."""
        with self._autocast():
            out = self.net.context(f_prev, f_cur, f_next)
        h, w = shape_px
        return out[..., :h, :w].float()

    def localize(self, out: Tensor, frame_indices: np.ndarray) -> Localizations:
        return localize(out, frame_indices, self.postprocess, self.scaling, self.pixel_size_nm)
