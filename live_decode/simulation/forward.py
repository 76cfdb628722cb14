"""The differentiable forward model: localizations → expected photons → the camera's likelihood.

One piece, used twice: the wake phase of autoencoder learning
(:mod:`live_decode.calibration.wake` fits the PSF, background and photons to real frames by
maximising :meth:`CameraNoise.log_likelihood`) and the live model-mismatch alarm
(:mod:`live_decode.quality.mismatch`: χ²/px of the card's forward model, :meth:`CameraNoise.chi2`).

Camera noise, in photo-electron equivalents before the EM register, x = (ADU − baseline) ·
e⁻/ADU / G (G the EM gain, 1 for an sCMOS), for an expected μ = QE · photons + spurious charge:

- mean μ, variance F² μ + c with F² = 2 for an EMCCD (the Gamma gain register doubles the
  Poisson variance; the standard high-gain approximation) and 1 for an sCMOS, and
  c = (read noise² + (e⁻/ADU)²/12) / G² (read noise and ADC rounding, e⁻²);
- likelihood: the shifted, scaled Poisson that has this mean and variance (the sCMOS
  approximation of Huang et al. 2013, with the excess noise factor for an EMCCD):
  ỹ = x / F² + c / F⁴ is Poisson with mean m = μ / F² + c / F⁴. Its score equations are unbiased
  (quasi-likelihood), so a fitted PSF width is not biased by the noise model.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from live_decode.config import AstigmaticPsfConfig, CameraConfig, GaussianPsfConfig, PsfConfig
from live_decode.errors import LiveDecodeError
from live_decode.simulation.emitters import Emitters
from live_decode.simulation.psf import (
    PSF,
    GaussianPSF,
    integrated_gaussian_1d,
    render,
    window_origin,
)

PsfShape = Literal["round", "elliptical", "astigmatic"]


class CameraNoise:
    """Mean, variance and likelihood of a camera's ADU for expected photons per pixel."""

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera
        em = camera.kind == "emccd" and camera.em_gain > 1.0
        self.gain = camera.em_gain if em else 1.0
        self.excess_sq = 2.0 if em else 1.0
        self.floor_e2 = (camera.read_noise_e**2 + camera.e_per_adu**2 / 12.0) / self.gain**2

    def electrons(self, photons: Tensor) -> Tensor:
        """Expected photo-electrons μ (before the EM register), same shape."""
        return self.camera.qe * photons.clamp(min=0.0) + self.camera.spurious_charge_e

    def to_electrons(self, adu: Tensor) -> Tensor:
        """x = (ADU − baseline) · e⁻/ADU / G: the ADU in photo-electron equivalents."""
        return (adu - self.camera.baseline_adu) * (self.camera.e_per_adu / self.gain)

    def adu_mean_var(self, photons: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of the ADU, same shape as ``photons``."""
        mu = self.electrons(photons)
        scale = self.gain / self.camera.e_per_adu  # ADU per photo-electron equivalent
        mean = mu * scale + self.camera.baseline_adu
        var = (self.excess_sq * mu + self.floor_e2) * scale**2
        return mean, var

    def chi2(self, adu: Tensor, photons: Tensor) -> Tensor:
        """Squared normalised residual (ADU − mean)² / var per pixel; ≈ 1 on average if right."""
        mean, var = self.adu_mean_var(photons)
        return (adu - mean) ** 2 / var

    def normalised_residual(self, adu: Tensor, photons: Tensor) -> Tensor:
        """(ADU − mean) / √var per pixel: the residual image, in standard deviations."""
        mean, var = self.adu_mean_var(photons)
        return (adu - mean) / var.sqrt()

    def counts(self, adu: Tensor) -> Tensor:
        """ỹ = x / F² + c / F⁴ (≥ 0): the ADU as the counts of the approximating Poisson."""
        f2 = self.excess_sq
        return (self.to_electrons(adu) / f2 + self.floor_e2 / f2**2).clamp(min=0.0)

    def expected_counts(self, photons: Tensor) -> Tensor:
        """m = μ / F² + c / F⁴: the mean of :meth:`counts` for expected ``photons``."""
        f2 = self.excess_sq
        return self.electrons(photons) / f2 + self.floor_e2 / f2**2

    def log_likelihood(self, adu: Tensor, photons: Tensor) -> Tensor:
        """Log-likelihood of each pixel (the shifted-scaled Poisson of the module docstring).

        Differentiable in ``photons``; the lgamma term makes values comparable between models
        of the same frames (it does not depend on the model; a fit precomputes it, see
        :class:`PixelLikelihood`).
        """
        y = self.counts(adu)
        m = self.expected_counts(photons)
        return y * torch.log(m) - m - torch.lgamma(y + 1.0)


class PixelLikelihood:
    """Mean log-likelihood per pixel of fixed frames, for a fit (model-free terms precomputed).

    Parameters
    ----------
    adu : (..., H, W)
        The frames, ADU. Saturated pixels (≥ ``max_adu``) are left out.
    """

    def __init__(self, noise: CameraNoise, adu: Tensor) -> None:
        self.noise = noise
        self.weight = (adu < noise.camera.max_adu).to(adu.dtype)
        self.n_px = float(self.weight.sum())
        self.y = noise.counts(adu) * self.weight
        self.const = float((torch.lgamma(noise.counts(adu) + 1.0) * self.weight).sum())

    def __call__(self, photons: Tensor) -> Tensor:
        """Mean log-likelihood per (unsaturated) pixel for expected ``photons`` (..., H, W)."""
        m = self.noise.expected_counts(photons)
        ll = (self.y * torch.log(m) - m * self.weight).sum() - self.const
        return ll / self.n_px


def emitters_from_locs(
    frame: npt.ArrayLike,
    x_nm: npt.ArrayLike,
    y_nm: npt.ArrayLike,
    z_nm: npt.ArrayLike,
    photons: npt.ArrayLike,
    pixel_size_nm: float,
    dtype: torch.dtype = torch.float32,
) -> Emitters:
    """:class:`Emitters` (x, y in px) from localization columns (nm, image index ``frame``)."""
    px = float(pixel_size_nm)
    x = np.asarray(x_nm, np.float64).reshape(-1) / px
    xyz = np.column_stack(
        [x, np.asarray(y_nm, np.float64).reshape(-1) / px, np.asarray(z_nm, np.float64)]
    )
    n = x.shape[0]
    return Emitters(
        torch.as_tensor(xyz.reshape(n, 3), dtype=dtype),
        torch.as_tensor(np.asarray(photons, np.float64).reshape(n), dtype=dtype),
        torch.as_tensor(np.asarray(frame, np.int64).reshape(n)),
        torch.arange(n),
    )


def expected_signal(
    psf: PSF, emitters: Emitters, n_images: int, shape_px: tuple[int, int]
) -> Tensor:
    """Expected emitter photons (n_images, H, W): :func:`live_decode.simulation.psf.render`."""
    return render(psf, emitters, n_images, shape_px)


def _cubic_basis(nodes: int, size: int, dtype: torch.dtype) -> Tensor:
    """(size, nodes): bicubic interpolation (align_corners) of ``nodes`` values onto ``size``."""
    eye = torch.eye(nodes, dtype=dtype)[:, None, :, None]  # one basis vector per batch entry
    up = torch.nn.functional.interpolate(eye, size=(size, 1), mode="bicubic", align_corners=True)
    return up[:, 0, :, 0].T.contiguous()


class BackgroundGrid:
    """A smooth background per image: a coarse grid of log-levels, upsampled bicubically.

    ``log_level`` (n_images, nodes, nodes) is the fitted tensor; :meth:`field` is
    (n_images, H, W) photons/px. A grid of 4 × 4 nodes follows uneven illumination over a 64-px
    frame but cannot absorb PSF-sized structure.
    """

    def __init__(self, initial: Tensor, nodes: int, shape_px: tuple[int, int]) -> None:
        coarse = torch.nn.functional.adaptive_avg_pool2d(initial[:, None], (nodes, nodes))
        self.log_level = coarse[:, 0].clamp(min=1e-2).log().detach().clone().requires_grad_()
        self.rows = _cubic_basis(nodes, shape_px[0], initial.dtype)
        self.cols = _cubic_basis(nodes, shape_px[1], initial.dtype)

    def field(self) -> Tensor:
        """(n_images, H, W) photons/px (bicubic in log-level: positive everywhere)."""
        return torch.einsum("hi,nij,wj->nhw", self.rows, self.log_level, self.cols).exp()


class WindowRenderer:
    """Renders emitters that move less than a pixel during a fit, with fixed K × K windows.

    The windows (and their pixel indices in a padded frame stack) are set once from the
    starting positions, so a fit step is a product of two 1-D integrated Gaussians and one
    ``index_add_``, without masks. x, y in px, z in nm; ``image`` (N,) the image index.
    """

    def __init__(
        self, x: Tensor, y: Tensor, image: Tensor, n_images: int, shape_px: tuple[int, int], k: int
    ) -> None:
        h, w = shape_px
        self.k, self.n_images, self.shape_px = k, n_images, shape_px
        self.col0 = window_origin(x, k)
        self.row0 = window_origin(y, k)
        self.hp, self.wp = h + 2 * k, w + 2 * k  # padding: every window lies inside
        ar = torch.arange(k)
        rows = self.row0[:, None] + k + ar
        cols = self.col0[:, None] + k + ar
        self.flat = (
            image[:, None, None] * (self.hp * self.wp)
            + rows[:, :, None] * self.wp
            + cols[:, None, :]
        ).reshape(-1)

    def __call__(self, psf: PSF, x: Tensor, y: Tensor, z: Tensor, photons: Tensor) -> Tensor:
        """Expected photons (n_images, H, W) of the emitters through ``psf`` (Gaussian family)."""
        if not isinstance(psf, GaussianPSF):
            raise TypeError("WindowRenderer renders Gaussian-family PSFs only")
        k = self.k
        sx, sy = psf.sigmas(z)
        px = integrated_gaussian_1d(x, sx, self.col0, k)
        py = integrated_gaussian_1d(y, sy, self.row0, k)
        contrib = (py[:, :, None] * px[:, None, :]) * photons[:, None, None]
        out = torch.zeros(self.n_images * self.hp * self.wp, dtype=contrib.dtype)
        out = out.index_add(0, self.flat, contrib.reshape(-1))
        h, w = self.shape_px
        return out.view(self.n_images, self.hp, self.wp)[:, k : k + h, k : k + w]


class FittablePSF(GaussianPSF):
    """A Gaussian (round or elliptical) or astigmatic PSF whose parameters autograd can fit.

    Parameters (fitted tensors, in :attr:`params`): ``log_sx``, ``log_sy`` (σ in px; one shared
    tensor when round) and, for an astigmatic PSF, ``focal_offset_100nm`` and
    ``log_depth_nm``. σx(z) = σ0 √(1 + ((z + c)/d)²), σy(z) = σ0 √(1 + ((z − c)/d)²) as
    :class:`live_decode.simulation.psf.AstigmaticPSF`.
    """

    def __init__(self, shape: PsfShape, params: dict[str, Tensor], roi_px: int) -> None:
        super().__init__(math.nan, roi_px)
        self.shape = shape
        self.params = params

    @classmethod
    def from_config(
        cls,
        cfg: PsfConfig,
        pixel_size_nm: float,
        shape: PsfShape | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> FittablePSF:
        """The config's PSF as a starting point; ``shape`` None: round/astigmatic as configured.

        Raises
        ------
        LiveDecodeError
            For a spline PSF (its coefficients are not fitted yet) or an astigmatic shape asked
            of a Gaussian setup (or the reverse).
        """

        def param(value: float) -> Tensor:
            return torch.tensor(value, dtype=dtype, requires_grad=True)

        if isinstance(cfg, GaussianPsfConfig):
            shape = shape or ("round" if cfg.sigma_y_nm is None else "elliptical")
            if shape == "astigmatic":
                raise LiveDecodeError(
                    "an astigmatic PSF cannot be fitted from a 2-D Gaussian setup (the emitters' z "
                    "is not known): fit 'elliptical' (σx, σy), or start from an astigmatic setup"
                )
            sx, sy = (s / pixel_size_nm for s in cfg.sigma_x_y_nm)
            if shape == "round":
                log_s = param(math.log(math.sqrt(sx * sy)))
                return cls(shape, {"log_sx": log_s, "log_sy": log_s}, cfg.roi_px)
            return cls(
                shape, {"log_sx": param(math.log(sx)), "log_sy": param(math.log(sy))}, cfg.roi_px
            )
        if isinstance(cfg, AstigmaticPsfConfig):
            if shape not in (None, "astigmatic"):
                raise LiveDecodeError(
                    f"the setup's PSF is astigmatic: fit it as 'astigmatic', not {shape!r}"
                )
            log_s = param(math.log(cfg.sigma0_nm / pixel_size_nm))
            params = {
                "log_sx": log_s,
                "log_sy": log_s,
                "focal_offset_100nm": param(cfg.focal_offset_nm / 100.0),
                "log_depth_nm": param(math.log(cfg.depth_of_field_nm)),
            }
            return cls("astigmatic", params, cfg.roi_px)
        raise LiveDecodeError(
            "fitting a spline PSF is not supported yet (its coefficients would need a smoothness "
            "prior): adapt a setup with a Gaussian or astigmatic PSF"
        )

    def tensors(self) -> list[Tensor]:
        """The distinct fitted tensors."""
        out: list[Tensor] = []
        for t in self.params.values():
            if all(t is not o for o in out):
                out.append(t)
        return out

    def sigmas(self, z_nm: Tensor) -> tuple[Tensor, Tensor]:
        p = self.params
        sx, sy = p["log_sx"].exp(), p["log_sy"].exp()
        if self.shape != "astigmatic":
            ones = torch.ones_like(z_nm)
            return ones * sx, ones * sy
        c = p["focal_offset_100nm"] * 100.0
        d = p["log_depth_nm"].exp()
        return (
            sx * torch.sqrt(1.0 + ((z_nm + c) / d) ** 2),
            sy * torch.sqrt(1.0 + ((z_nm - c) / d) ** 2),
        )

    def values_nm(self, pixel_size_nm: float) -> dict[str, float]:
        """The fitted parameters in nm: ``sigma_nm`` (√(σx σy)), ``sigma_x_nm``, ``sigma_y_nm``
        (σ0 for an astigmatic PSF), and ``focal_offset_nm``, ``depth_of_field_nm`` if astigmatic.
        """
        p = {k: float(v.detach()) for k, v in self.params.items()}
        sx, sy = math.exp(p["log_sx"]) * pixel_size_nm, math.exp(p["log_sy"]) * pixel_size_nm
        out = {"sigma_nm": math.sqrt(sx * sy), "sigma_x_nm": sx, "sigma_y_nm": sy}
        if self.shape == "astigmatic":
            out["focal_offset_nm"] = abs(p["focal_offset_100nm"] * 100.0)
            out["depth_of_field_nm"] = math.exp(p["log_depth_nm"])
        return out

    def to_config(self, cfg: PsfConfig, pixel_size_nm: float) -> PsfConfig:
        """``cfg`` with the fitted values (rounded to 0.1 nm); an elliptical fit sets σy."""
        v = self.values_nm(pixel_size_nm)
        if isinstance(cfg, AstigmaticPsfConfig):
            return cfg.model_copy(
                update={
                    "sigma0_nm": round(v["sigma_nm"], 1),
                    "focal_offset_nm": round(v["focal_offset_nm"], 1),
                    "depth_of_field_nm": round(v["depth_of_field_nm"], 1),
                }
            )
        if self.shape == "round":
            return GaussianPsfConfig(sigma_nm=round(v["sigma_nm"], 1), roi_px=cfg.roi_px)
        return GaussianPsfConfig(
            sigma_nm=round(v["sigma_x_nm"], 1),
            sigma_y_nm=round(v["sigma_y_nm"], 1),
            roi_px=cfg.roi_px,
        )
