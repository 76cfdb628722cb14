"""Emitters: the container that carries positions with their units, and spatial samplers.

Coordinates follow DESIGN.md §4: x is the column, y the row, in pixels; pixel (row i, col j) covers
x ∈ [j, j+1), so its centre is j + 0.5. z is in nm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from live_decode.config import FilamentConfig


@dataclass(frozen=True)
class Emitters:
    """Emitters, each in one image.

    Attributes
    ----------
    xyz : (N, 3) float
        x, y in px (pixel j covers [j, j+1)); z in nm.
    photons : (N,) float
        Photons emitted during that image's exposure.
    frame : (N,) int64
        Index of the image the emitter is in.
    id : (N,) int64
        Identity of the fluorophore; the same across the frames an emitter spans.
    """

    xyz: Tensor
    photons: Tensor
    frame: Tensor
    id: Tensor

    def __len__(self) -> int:
        return int(self.photons.shape[0])

    def select(self, mask: Tensor) -> Emitters:
        """The emitters where the boolean ``mask`` (N,) is true."""
        return Emitters(self.xyz[mask], self.photons[mask], self.frame[mask], self.id[mask])

    def to(self, device: torch.device | str) -> Emitters:
        return Emitters(
            self.xyz.to(device), self.photons.to(device), self.frame.to(device), self.id.to(device)
        )

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Emitters:
        return Emitters(
            torch.zeros(0, 3, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
        )


def uniform_positions(
    n: int,
    shape_px: tuple[int, int],
    z_range_nm: tuple[float, float],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Tensor:
    """``n`` points of a homogeneous 3-D Poisson process in the box (n, 3): x, y px; z nm."""
    u = torch.rand(n, 3, generator=generator, device=device)
    h, w = shape_px
    z0, z1 = z_range_nm
    scale = torch.tensor([w, h, z1 - z0], device=device, dtype=u.dtype)
    offset = torch.tensor([0.0, 0.0, z0], device=device, dtype=u.dtype)
    return u * scale + offset


FILAMENT_STEP_UM = 0.05
"""Contour step of the simulated worm-like chains."""
LABEL_JITTER_NM = 12.5
"""Distance of a label from the filament axis (antibody/linker size), rms per axis."""


def filament_steps(shape_px: tuple[int, int], pixel_size_nm: float) -> tuple[int, float]:
    """Steps of a filament long enough to cross a field of ``shape_px`` from any start; step, px.

    The length is twice the field's diagonal, walked both ways from the start.
    """
    h, w = shape_px
    length_um = 2.0 * math.hypot(h, w) * pixel_size_nm / 1000.0
    return max(2, int(length_um / FILAMENT_STEP_UM)), FILAMENT_STEP_UM * 1000.0 / pixel_size_nm


def worm_like_paths(start: Tensor, theta: Tensor, step_px: float) -> Tensor:
    """Contours of worm-like chains through ``start``, (..., S, 2): x, y px.

    Parameters
    ----------
    start : (..., 2) float
        The point each chain passes through at its middle step (x, y px).
    theta : (..., S) float
        Tangent angle at each step (a heading plus a cumulative sum of Gaussian bends of variance
        step/persistence length: a worm-like chain).
    step_px : float
        Contour length of one step.
    """
    steps = torch.stack([torch.cos(theta), torch.sin(theta)], -1) * step_px
    # Walk both ways from the start so the filament crosses the field of view.
    half = theta.shape[-1] // 2
    path = torch.cumsum(steps, -2)
    return path - path[..., half : half + 1, :] + start[..., None, :]


def filament_z(position: Tensor, phase: Tensor | float, z_range_nm: tuple[float, float]) -> Tensor:
    """z (nm) of a filament that drifts smoothly through the z range along its contour.

    ``position`` is the fraction of the contour (0 → 1) covering half a period of a sinusoid of
    the given ``phase``.
    """
    z0, z1 = z_range_nm
    return (z0 + z1) / 2 + (z1 - z0) / 2 * torch.sin(position * math.pi + phase)


def filament_positions(
    cfg: FilamentConfig,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    z_range_nm: tuple[float, float],
    generator: torch.Generator,
) -> Tensor:
    """Fluorophore positions labelled along random worm-like filaments, (N, 3): x, y px; z nm.

    Each filament is a worm-like chain that starts at a random point with a random heading; its
    tangent angle diffuses with variance step/persistence length per step. Labels are placed as a
    Poisson process along the contour with ``labels_per_um``. z drifts smoothly within the range.
    """
    h, w = shape_px
    n_steps, step_px = filament_steps(shape_px, pixel_size_nm)
    step_um = FILAMENT_STEP_UM
    points = []
    for _ in range(cfg.count):
        start = torch.rand(2, generator=generator) * torch.tensor([w, h], dtype=torch.float32)
        heading = float(torch.rand(1, generator=generator)) * 2 * math.pi
        dtheta = torch.randn(n_steps, generator=generator) * math.sqrt(
            step_um / cfg.persistence_length_um
        )
        path = worm_like_paths(start, heading + torch.cumsum(dtheta, 0), step_px)
        inside = (path[:, 0] >= 0) & (path[:, 0] < w) & (path[:, 1] >= 0) & (path[:, 1] < h)
        path = path[inside]
        if path.shape[0] == 0:
            continue
        n_labels = int(
            torch.poisson(
                torch.tensor(path.shape[0] * step_um * cfg.labels_per_um), generator=generator
            )
        )
        idx = torch.randint(0, path.shape[0], (n_labels,), generator=generator)
        jitter = torch.randn(n_labels, 2, generator=generator) * (LABEL_JITTER_NM / pixel_size_nm)
        xy = path[idx] + jitter
        z_phase = float(torch.rand(1, generator=generator)) * 2 * math.pi
        z = filament_z(idx.float() / max(1, path.shape[0]), z_phase, z_range_nm)
        points.append(torch.cat([xy, z[:, None]], 1))
    if not points:
        return torch.zeros(0, 3)
    xyz = torch.cat(points, 0)
    keep = (xyz[:, 0] >= 0) & (xyz[:, 0] < w) & (xyz[:, 1] >= 0) & (xyz[:, 1] < h)
    return xyz[keep]
