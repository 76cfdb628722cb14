"""Cramér–Rao lower bound of single-emitter fits, from a PSF model's Fisher information.

Model of one emitter's window, in photons per pixel: μ_k = photons · psf_k(x, y, z) + bg. The
camera turns photons into photo-electrons with quantum efficiency q, adds spurious charge s and, for
an EMCCD, multiplies by the EM register (excess-noise factor 2 at high gain) before read noise σ.
With the usual Poisson approximation of read noise (Huang et al. 2013), the pixel's electrons are
Poisson with mean q·μ_k + s + σ_eff², so for θ = (x, y, z, photons, bg)

    I_ij = (1 / F) · Σ_k q² (∂μ_k/∂θ_i)(∂μ_k/∂θ_j) / (q·μ_k + s + σ_eff²),

F = 2 with EM gain (σ_eff = σ / gain, read noise referred to the register input) and F = 1 without
(σ_eff = σ). The PSF derivatives come from torch forward-mode autodiff of ``psf.roi``, one pass per
coordinate for all emitters at once (each window depends on its own emitter only). Given the frame
shape, window pixels outside the camera carry no information: an emitter at the edge of the field of
view has a larger bound than the same emitter in the middle.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from live_decode.config import CameraConfig
from live_decode.simulation.camera import Camera
from live_decode.simulation.psf import PSF

_Z = 2  # index of z in θ = (x, y, z, photons, bg)
_UNIDENTIFIABLE = 1e-12  # I_zz below this fraction of the lateral information: z not identifiable
_MIN_RATE_E = 1e-9  # electrons/px: keeps 1/rate finite where PSF and background are exactly 0


@dataclass(frozen=True)
class Crlb:
    """CRLB standard deviations (square roots of the bound on the variance), each (N,).

    Attributes
    ----------
    x_nm, y_nm : lateral, nm.
    z_nm : axial, nm; NaN where z is not identifiable (a 2-D PSF, or z outside a spline's range),
        as ``metrics.rmse_vs_crlb`` marks a missing z.
    photons : signal photons.
    bg : background, photons per pixel.
    """

    x_nm: Tensor
    y_nm: Tensor
    z_nm: Tensor
    photons: Tensor
    bg: Tensor

    def as_tensor(self) -> Tensor:
        """(N, 5): x_nm, y_nm, z_nm, photons, bg."""
        return torch.stack([self.x_nm, self.y_nm, self.z_nm, self.photons, self.bg], dim=1)


def crlb(
    psf: PSF,
    xyz: Tensor,
    photons: Tensor,
    bg_photons: Tensor,
    camera: CameraConfig,
    roi_px: int | None = None,
    frame_shape_px: tuple[int, int] | None = None,
) -> Crlb:
    """CRLB of x, y, z, photons and background for each emitter, fitted alone in its window.

    Parameters
    ----------
    psf : PSF
        The PSF model; its ``roi`` values must be differentiable in xyz.
    xyz : (N, 3) float
        x, y in px; z in nm.
    photons : (N,) float
        Signal photons per emitter (before QE).
    bg_photons : (N,) float
        Background photons per pixel (before QE).
    camera : CameraConfig
        Pixel size (for nm), QE, spurious charge, EM gain and read noise.
    roi_px : int, optional
        Fit window side; the PSF's own ``roi_px`` if None.
    frame_shape_px : (H, W), optional
        The camera frame: window pixels outside it are not observed. None: an unbounded camera.

    Returns
    -------
    Crlb
        Standard deviations; see :class:`Crlb` for units.
    """
    fi = fisher_information(psf, xyz, photons, bg_photons, camera, roi_px, frame_shape_px)
    var = _inverse_diagonal(fi)
    sd = torch.sqrt(var)
    px_nm = camera.pixel_size_nm
    return Crlb(sd[:, 0] * px_nm, sd[:, 1] * px_nm, sd[:, 2], sd[:, 3], sd[:, 4])


def fisher_information(
    psf: PSF,
    xyz: Tensor,
    photons: Tensor,
    bg_photons: Tensor,
    camera: CameraConfig,
    roi_px: int | None = None,
    frame_shape_px: tuple[int, int] | None = None,
) -> Tensor:
    """(N, 5, 5) float64 Fisher information of θ = (x px, y px, z nm, photons, bg photons/px).

    Parameters as in :func:`crlb`.
    """
    if roi_px is not None:
        psf = copy.copy(psf)  # the protocol's roi_px is the window side; change it on a copy only
        psf.roi_px = roi_px
    xyz64 = xyz.detach().to(torch.float64)
    values, d_values, row0, col0 = psf_jacobian(psf, xyz64)  # (N, P), (N, P, 3), (N,), (N,)
    n_phot = photons.detach().to(torch.float64)[:, None]
    bg = bg_photons.detach().to(torch.float64)[:, None]
    mu = n_phot * values + bg
    d_mu = torch.cat(
        [n_phot[:, :, None] * d_values, values[:, :, None], torch.ones_like(values)[:, :, None]],
        dim=2,
    )  # (N, P, 5)
    qe, offset_e, excess = _noise_model(camera)
    rate_e = (qe * mu + offset_e).clamp(min=_MIN_RATE_E)
    weight = qe**2 / (excess * rate_e)  # (N, P)
    if frame_shape_px is not None:
        weight = weight * _inside_frame(row0, col0, psf.roi_px, frame_shape_px)
    return torch.einsum("np,npi,npj->nij", weight, d_mu, d_mu)


def psf_jacobian(psf: PSF, xyz: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PSF window values, their derivatives in x, y (per px) and z (per nm), and window origins.

    Returns
    -------
    values : (N, K*K)
    d_values : (N, K*K, 3)
    row0, col0 : (N,) int64
        Top-left pixel of each window in the frame.
    """

    def window(p: Tensor) -> Tensor:
        return psf.roi(p)[0].flatten(1)

    roi, row0, col0 = psf.roi(xyz)
    derivatives: list[Tensor] = []
    for axis in range(3):
        tangent = torch.zeros_like(xyz)
        tangent[:, axis] = 1.0
        derivatives.append(torch.func.jvp(window, (xyz,), (tangent,))[1])
    values = roi.flatten(1).detach()
    return values, torch.stack(derivatives, dim=2).detach(), row0, col0


def _inside_frame(row0: Tensor, col0: Tensor, k: int, frame_shape_px: tuple[int, int]) -> Tensor:
    """(N, K*K) 1.0 where the K×K window pixel lies on the camera, else 0.0."""
    offsets = torch.arange(k, device=row0.device)
    rows = row0[:, None] + offsets  # (N, K)
    cols = col0[:, None] + offsets
    row_ok = (rows >= 0) & (rows < frame_shape_px[0])
    col_ok = (cols >= 0) & (cols < frame_shape_px[1])
    return (row_ok[:, :, None] & col_ok[:, None, :]).flatten(1).to(torch.float64)


def _noise_model(camera: CameraConfig) -> tuple[float, float, float]:
    """(QE, Poisson offset in e⁻: spurious charge + effective read variance, excess factor)."""
    if Camera(camera).uses_em_gain:
        read_e = camera.read_noise_e / camera.em_gain
        excess = 2.0
    else:
        read_e = camera.read_noise_e
        excess = 1.0
    return camera.qe, camera.spurious_charge_e + read_e**2, excess


def _inverse_diagonal(fi: Tensor) -> Tensor:
    """(N, 5) diagonal of the inverse; z is left out (variance NaN) where it has no information."""
    lateral = 0.5 * (fi[:, 0, 0] + fi[:, 1, 1])
    no_z = fi[:, _Z, _Z] <= _UNIDENTIFIABLE * lateral
    fixed = fi.clone()
    # Replace the z row/column by the identity so the other parameters invert on their own.
    fixed[no_z, _Z, :] = 0.0
    fixed[no_z, :, _Z] = 0.0
    fixed[no_z, _Z, _Z] = 1.0
    var: Tensor = torch.linalg.inv(fixed).diagonal(dim1=1, dim2=2).clone()
    var[no_z, _Z] = float("nan")
    return var
