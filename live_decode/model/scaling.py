"""Scales between physical units and the network's normalised inputs and outputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from live_decode.config import Config

if TYPE_CHECKING:  # the model card reads Scaling without torch (compatibility checks, supervisor)
    from torch import Tensor


@dataclass(frozen=True)
class Scaling:
    """Normalisation constants, fixed at training time and stored in the model card.

    input = (photons − input_offset) / input_scale; network photons, bg and z are fractions of
    photons_max, bg_max and z_max_nm. z_max_nm = 0 marks a 2-D model.
    """

    input_offset: float
    input_scale: float
    photons_max: float
    bg_max: float
    z_max_nm: float

    @classmethod
    def from_config(cfg: type[Scaling], config: Config) -> Scaling:
        """DECODE's automatic scaling: offset = mean bg, scale = μ/50, maxima with headroom."""
        bg_lo, bg_hi = config.background.uniform_photons
        bg_peak = bg_hi * (1.0 + config.background.variation_fraction)
        ph = config.photophysics
        z_lo, z_hi = config.emitters.z_range_nm
        return cfg(
            input_offset=(bg_lo + bg_hi) / 2.0,
            input_scale=ph.photons_mean / 50.0,
            photons_max=ph.photons_mean + 8.0 * ph.photons_sigma,
            bg_max=1.2 * max(bg_peak, 1.0),
            z_max_nm=1.2 * max(abs(z_lo), abs(z_hi)),
        )

    @property
    def is_3d(self) -> bool:
        return self.z_max_nm > 0

    def scale_input(self, photons: Tensor) -> Tensor:
        return (photons - self.input_offset) / self.input_scale

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
