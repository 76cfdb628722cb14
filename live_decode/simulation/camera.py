"""Camera noise model and its inverse (ADU -> photons), for EMCCD and sCMOS.

The forward model is a chain of the physical steps: photons -> photo-electrons (QE, Poisson shot
noise with spurious charge) -> EM gain register (Gamma with shape = electrons, scale = gain) ->
read noise (Gaussian, electrons rms) -> ADC (electrons / e_per_adu + baseline, rounded, clipped).
"""

from __future__ import annotations

import torch
from torch import Tensor

from live_decode.config import CameraConfig
from live_decode.messages import CameraMeta


def sample_gamma(shape: Tensor, generator: torch.Generator) -> Tensor:
    """Gamma(shape, 1) samples for shape >= 1 (0 where shape == 0), seeded by ``generator``.

    Marsaglia & Tsang (2000), vectorised: each round accepts ~97% of the remaining draws. torch's
    own Gamma sampler takes no generator, so it cannot be seeded per simulator.
    """
    flat_shape = shape.reshape(-1)
    flat_out = torch.zeros_like(flat_shape)
    todo = torch.nonzero(flat_shape > 0, as_tuple=True)[0]
    while todo.numel():
        d = flat_shape[todo] - 1.0 / 3.0
        c = 1.0 / torch.sqrt(9.0 * d)
        x = torch.randn(todo.numel(), generator=generator, device=shape.device, dtype=shape.dtype)
        u = torch.rand(todo.numel(), generator=generator, device=shape.device, dtype=shape.dtype)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp(min=1e-30)))
        flat_out[todo[ok]] = d[ok] * v[ok]
        todo = todo[~ok]
    return flat_out.view(shape.shape)


class Camera:
    """A camera described by :class:`CameraConfig`."""

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self._meta = CameraMeta.from_camera(cfg)

    @property
    def uses_em_gain(self) -> bool:
        return self.cfg.kind == "emccd" and self.cfg.em_gain > 1.0

    def electrons(self, photons: Tensor, generator: torch.Generator) -> Tensor:
        """Electrons after shot noise and the EM register (before read noise), same shape."""
        cfg = self.cfg
        rate = photons.clamp(min=0.0) * cfg.qe + cfg.spurious_charge_e
        e = torch.poisson(rate, generator=generator)
        if self.uses_em_gain:
            e = sample_gamma(e, generator) * cfg.em_gain
        return e

    def forward(self, photons: Tensor, generator: torch.Generator) -> Tensor:
        """Camera frames in ADU (float tensor of integers, clipped to [0, max_adu]).

        Parameters
        ----------
        photons : (..., H, W) float
            Expected photons per pixel (signal + background).
        """
        cfg = self.cfg
        e = self.electrons(photons, generator)
        e = e + cfg.read_noise_e * torch.randn(
            e.shape, generator=generator, device=e.device, dtype=e.dtype
        )
        adu = torch.round(e / cfg.e_per_adu + cfg.baseline_adu)
        return adu.clamp(0.0, float(cfg.max_adu))

    def to_photons(self, adu: Tensor) -> Tensor:
        """Inverse mean map ADU -> photons (:meth:`CameraMeta.adu_to_photons`, as inference)."""
        return self._meta.adu_to_photons(adu)
