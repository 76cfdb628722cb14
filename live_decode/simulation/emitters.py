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
    step_um = 0.05
    step_px = step_um * 1000.0 / pixel_size_nm
    length_um = 2.0 * math.hypot(h, w) * pixel_size_nm / 1000.0
    n_steps = max(2, int(length_um / step_um))
    points = []
    for _ in range(cfg.count):
        start = torch.rand(2, generator=generator) * torch.tensor([w, h], dtype=torch.float32)
        heading = float(torch.rand(1, generator=generator)) * 2 * math.pi
        dtheta = torch.randn(n_steps, generator=generator) * math.sqrt(
            step_um / cfg.persistence_length_um
        )
        theta = heading + torch.cumsum(dtheta, 0)
        steps = torch.stack([torch.cos(theta), torch.sin(theta)], 1) * step_px
        # Walk both ways from the start so the filament crosses the field of view.
        half = n_steps // 2
        path = torch.cumsum(steps, 0)
        path = path - path[half] + start
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
        jitter = torch.randn(n_labels, 2, generator=generator) * (12.5 / pixel_size_nm)
        xy = path[idx] + jitter
        z0, z1 = z_range_nm
        z_phase = float(torch.rand(1, generator=generator)) * 2 * math.pi
        z = (z0 + z1) / 2 + (z1 - z0) / 2 * torch.sin(
            idx.float() / max(1, path.shape[0]) * math.pi + z_phase
        )
        points.append(torch.cat([xy, z[:, None]], 1))
    if not points:
        return torch.zeros(0, 3)
    xyz = torch.cat(points, 0)
    keep = (xyz[:, 0] >= 0) & (xyz[:, 0] < w) & (xyz[:, 1] >= 0) & (xyz[:, 1] < h)
    return xyz[keep]
