"""Point-spread functions, rendered per emitter into a small window and scattered into frames.

Every PSF implements :class:`PSF`: ``roi(xyz)`` gives each emitter's pixel-integrated PSF over a
K×K window (values sum to ~1 for a window that holds the PSF) and the window's top-left pixel. The
values are differentiable in ``xyz``, which the CRLB uses. :func:`render` places the windows into
frames with one ``index_add_``, so there is no Python loop over emitters and the same code runs on
CPU and CUDA.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from live_decode.config import AstigmaticPsfConfig, GaussianPsfConfig, PsfConfig
from live_decode.simulation.emitters import Emitters


class PSF(Protocol):
    """A PSF model. x, y in px (pixel j covers [j, j+1)), z in nm."""

    roi_px: int

    def roi(self, xyz: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-emitter windows.

        Returns
        -------
        values : (N, K, K) float
            Fraction of the emitter's photons landing in each pixel of the window.
        row0, col0 : (N,) int64
            Row and column of the window's top-left pixel in the frame.
        """
        ...


def window_origin(pos_px: Tensor, k: int) -> Tensor:
    """Top-left index of a K-wide window centred on the pixel holding ``pos_px``."""
    return torch.floor(pos_px.detach()).long() - k // 2


def integrated_gaussian_1d(pos_px: Tensor, sigma_px: Tensor, origin: Tensor, k: int) -> Tensor:
    """(N, K) integral of a unit 1-D Gaussian over pixels origin .. origin+K-1."""
    edges = origin[:, None].to(pos_px.dtype) + torch.arange(k + 1, device=pos_px.device)
    cdf = torch.erf((edges - pos_px[:, None]) / (math.sqrt(2.0) * sigma_px[:, None]))
    return 0.5 * (cdf[:, 1:] - cdf[:, :-1])


class GaussianPSF:
    """Separable pixel-integrated Gaussian with per-emitter σx, σy (px) from ``sigmas(z)``.

    ``sigma_y_px`` None: round (σy = σx = ``sigma_px``).
    """

    def __init__(self, sigma_px: float, roi_px: int, sigma_y_px: float | None = None) -> None:
        self.sigma_px = sigma_px
        self.sigma_y_px = sigma_px if sigma_y_px is None else sigma_y_px
        self.roi_px = roi_px

    def sigmas(self, z_nm: Tensor) -> tuple[Tensor, Tensor]:
        """σx, σy in px for each emitter, (N,) each."""
        return torch.full_like(z_nm, self.sigma_px), torch.full_like(z_nm, self.sigma_y_px)

    def roi(self, xyz: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        k = self.roi_px
        sx, sy = self.sigmas(xyz[:, 2])
        col0 = window_origin(xyz[:, 0], k)
        row0 = window_origin(xyz[:, 1], k)
        px = integrated_gaussian_1d(xyz[:, 0], sx, col0, k)
        py = integrated_gaussian_1d(xyz[:, 1], sy, row0, k)
        return py[:, :, None] * px[:, None, :], row0, col0


class AstigmaticPSF(GaussianPSF):
    """Astigmatic Gaussian: σx(z) = σ0 √(1 + ((z + c)/d)²), σy(z) = σ0 √(1 + ((z − c)/d)²).

    c is the focal offset and d the depth of field (both nm); x is in focus at z = −c, y at +c.
    """

    def __init__(
        self, sigma0_px: float, focal_offset_nm: float, depth_of_field_nm: float, roi_px: int
    ) -> None:
        super().__init__(sigma0_px, roi_px)
        self.focal_offset_nm = focal_offset_nm
        self.depth_of_field_nm = depth_of_field_nm

    def sigmas(self, z_nm: Tensor) -> tuple[Tensor, Tensor]:
        c, d = self.focal_offset_nm, self.depth_of_field_nm
        sx = self.sigma_px * torch.sqrt(1.0 + ((z_nm + c) / d) ** 2)
        sy = self.sigma_px * torch.sqrt(1.0 + ((z_nm - c) / d) ** 2)
        return sx, sy


def build_psf(cfg: PsfConfig, pixel_size_nm: float) -> PSF:
    """The PSF a config describes, with lateral sizes converted to px."""
    if isinstance(cfg, GaussianPsfConfig):
        sx, sy = cfg.sigma_x_y_nm
        return GaussianPSF(sx / pixel_size_nm, cfg.roi_px, sy / pixel_size_nm)
    if isinstance(cfg, AstigmaticPsfConfig):
        return AstigmaticPSF(
            cfg.sigma0_nm / pixel_size_nm, cfg.focal_offset_nm, cfg.depth_of_field_nm, cfg.roi_px
        )
    from live_decode.simulation.spline_psf import SplinePSF

    return SplinePSF.from_config(cfg)


def render(psf: PSF, emitters: Emitters, n_images: int, shape_px: tuple[int, int]) -> Tensor:
    """Expected photons per pixel, (n_images, H, W), from all ``emitters``.

    Parts of a window outside the frame are dropped (the light falls off the chip).
    """
    h, w = shape_px
    device = emitters.xyz.device
    out = torch.zeros(n_images * h * w, device=device, dtype=emitters.xyz.dtype)
    if len(emitters) == 0:
        return out.view(n_images, h, w)
    values, row0, col0 = psf.roi(emitters.xyz)
    k = values.shape[-1]
    ar = torch.arange(k, device=device)
    rows = row0[:, None] + ar  # (N, K)
    cols = col0[:, None] + ar
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    flat = emitters.frame[:, None, None] * (h * w) + rows[:, :, None] * w + cols[:, None, :]
    contrib = values * emitters.photons[:, None, None]
    out.index_add_(0, flat[valid], contrib[valid].to(out.dtype))
    return out.view(n_images, h, w)
