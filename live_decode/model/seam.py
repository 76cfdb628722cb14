"""The model seam: what every network the worker runs takes and yields.

A localizer takes camera frames (ADU) with their camera (:class:`CameraMeta`: the photon
conversion) and yields, per frame, localizations and/or a super-resolution image tile. It runs in
two stages so the streaming worker can keep temporal context without recomputing: ``features``
once per frame (cached in the ring buffer), then ``outputs`` per frame from the features of
t−1, t, t+1 (a single-frame network ignores the neighbours). DECODE
(:class:`live_decode.inference.engine.Localizer`) and Deep-STORM
(:class:`live_decode.inference.deepstorm.DeepStormLocalizer`) implement it; a plugin's network
does too (:mod:`live_decode.pipeline.kinds`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from live_decode.config import Config
from live_decode.messages import CameraMeta, Localizations
from live_decode.model.card import ModelCard
from live_decode.model.scaling import Scaling


@runtime_checkable
class NetworkLocalizer(Protocol):
    """A loaded network ready to localize frames on :attr:`device`.

    Attributes
    ----------
    card
        The model card (what the network was trained for; checked against the camera).
    config
        The card's config, parsed.
    scaling
        Input/output scales (only ``is_3d`` is used outside the network: a z column or not).
    device
        Where the network runs.
    pixel_size_nm
        Camera pixel size the network was trained for.
    predicts_photons
        The localizations carry photons, background and σ estimates (else those are NaN, and
        checks that need them, such as the model-mismatch alarm, are off).
    image_upsampling
        Super-resolution pixels per camera pixel of :meth:`image` tiles; None: no images.
    """

    card: ModelCard
    config: Config
    scaling: Scaling
    device: torch.device
    pixel_size_nm: float
    predicts_photons: bool
    image_upsampling: int | None

    def to_input(self, adu: np.ndarray | Tensor, cam: CameraMeta) -> Tensor:
        """Network input (N, 1, H', W') on the device from ADU frames (N, H, W)."""
        ...

    def features(self, x: Tensor) -> Tensor:
        """Per-frame stage (N, ...) of inputs (N, 1, H', W'); kept for the frames around it."""
        ...

    def outputs(
        self, f_prev: Tensor, f_cur: Tensor, f_next: Tensor, shape_px: tuple[int, int]
    ) -> Tensor:
        """Output maps (N, C, ...) of frames t from the features of t−1, t, t+1."""
        ...

    def localize(self, out: Tensor, frame_indices: np.ndarray) -> Localizations:
        """Localizations (LOC_DTYPE) of the frames whose outputs are ``out``."""
        ...

    def image(self, out: Tensor) -> Tensor | None:
        """Super-resolution tiles (N, H·u, W·u) of those frames (emitter density), or None."""
        ...
