"""The Deep-STORM localizer: one frame → density image tile (and its local maxima).

Implements :class:`live_decode.model.seam.NetworkLocalizer`. Deep-STORM has no temporal context:
the per-frame stage (``features``) is the scaled, padded frame itself, and ``outputs`` runs the
whole network on frame t alone, so the ring buffer, the worker and offline inference run it
unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from live_decode.config import DeepStormConfig
from live_decode.messages import CameraMeta, Localizations
from live_decode.model.card import ModelCard
from live_decode.model.deepstorm import SIZE_MULTIPLE, DeepStormNet
from live_decode.model.deepstorm_post import localize_density
from live_decode.model.network import pad_to_multiple


class DeepStormLocalizer:
    """A loaded :class:`DeepStormNet` on ``device``; ``threshold`` overrides the card's."""

    predicts_photons = False

    def __init__(
        self,
        net: DeepStormNet,
        card: ModelCard,
        device: torch.device,
        threshold: float | None = None,
    ) -> None:
        self.net = net.to(device).eval()
        self.card = card
        self.device = device
        self.config = card.parsed_config
        self.scaling = card.parsed_scaling
        self.pixel_size_nm = self.config.camera.pixel_size_nm
        ds = self.config.model.deepstorm
        self.deepstorm: DeepStormConfig = (
            ds if threshold is None else ds.model_copy(update={"threshold": threshold})
        )
        self.image_upsampling: int | None = ds.upsampling

    def to_input(self, adu: np.ndarray | Tensor, cam: CameraMeta) -> Tensor:
        """Scaled photons (N, 1, H', W') on the device, padded to multiples of 8 (bottom/right)."""
        x = torch.as_tensor(adu).to(self.device, non_blocking=True).float()
        photons = cam.adu_to_photons(x)
        return pad_to_multiple(self.scaling.scale_input(photons)[:, None], SIZE_MULTIPLE)

    def features(self, x: Tensor) -> Tensor:
        """The frames themselves: Deep-STORM looks at one frame at a time."""
        return x

    @torch.no_grad()
    def outputs(
        self, f_prev: Tensor, f_cur: Tensor, f_next: Tensor, shape_px: tuple[int, int]
    ) -> Tensor:
        """Density images (N, 1, H·u, W·u) of the frames ``f_cur`` (neighbours unused)."""
        u = self.deepstorm.upsampling
        out: Tensor = self.net(f_cur)
        h, w = shape_px
        return out[..., : h * u, : w * u].float()

    def localize(self, out: Tensor, frame_indices: np.ndarray) -> Localizations:
        return localize_density(out, frame_indices, self.deepstorm, self.pixel_size_nm)

    def image(self, out: Tensor) -> Tensor | None:
        """The density (N, H·u, W·u), pixels below the noise floor (``image_floor`` of one
        spike) set to 0: summed over frames, the super-resolved image."""
        density = out[:, 0]
        floor = self.deepstorm.image_floor * self.deepstorm.spike_height
        return torch.where(density >= floor, density, torch.zeros_like(density)).clamp(min=0)
