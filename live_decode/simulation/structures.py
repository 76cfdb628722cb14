"""Structured training windows: emitters on random filaments or in clusters, batched on device.

Real samples are locally far denser than their field average (labels crowd along microtubules
and into clusters); networks trained on uniform windows only see that crowding rarely. Here each
window of a batch has a kind — uniform, filaments or clusters — and an emitter's position is drawn
from its window's structure. All windows of a kind are drawn at once (no Python loop over
windows or filaments), with the filaments' worm-like chains of :mod:`.emitters`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from live_decode.config import StructuredSamplesConfig
from live_decode.simulation.emitters import (
    FILAMENT_STEP_UM,
    LABEL_JITTER_NM,
    filament_steps,
    filament_z,
    uniform_positions,
    worm_like_paths,
)

UNIFORM, FILAMENTS, CLUSTERS = 0, 1, 2
"""Window kinds."""


def window_kinds(
    n: int, cfg: StructuredSamplesConfig, generator: torch.Generator, device: torch.device
) -> Tensor:
    """Kind of each of ``n`` windows (n,) int64: structured with ``cfg.fraction``, else uniform."""
    u = torch.rand(n, 2, generator=generator, device=device)
    structured = torch.where(u[:, 1] < cfg.filament_share, FILAMENTS, CLUSTERS)
    return torch.where(u[:, 0] < cfg.fraction, structured, UNIFORM)


class StructuredPositions:
    """Positions of emitters given their window: uniform, on filaments or in clusters.

    Parameters
    ----------
    kinds : (B,) int
        Kind of each window (:data:`UNIFORM`, :data:`FILAMENTS`, :data:`CLUSTERS`).
    """

    def __init__(
        self,
        kinds: Tensor,
        cfg: StructuredSamplesConfig,
        shape_px: tuple[int, int],
        pixel_size_nm: float,
        z_range_nm: tuple[float, float],
        generator: torch.Generator,
    ) -> None:
        self.kinds = kinds
        self.cfg = cfg
        self.shape_px = shape_px
        self.pixel_size_nm = pixel_size_nm
        self.z_range_nm = z_range_nm
        self.generator = generator

    def __call__(self, window: Tensor) -> Tensor:
        """Positions (n, 3), x, y px and z nm, of emitters in windows ``window`` (n,) int."""
        xyz = uniform_positions(
            window.numel(), self.shape_px, self.z_range_nm, self.generator, window.device
        )
        kind = self.kinds[window]
        for value, draw in ((FILAMENTS, self._on_filaments), (CLUSTERS, self._in_clusters)):
            windows = torch.nonzero(self.kinds == value).flatten()
            members = torch.nonzero(kind == value).flatten()
            if windows.numel() and members.numel():
                # row of each member's window among the windows of this kind
                row = torch.searchsorted(windows, window[members])
                xyz[members] = draw(windows.numel(), row)
        return xyz

    # ------------------------------------------------------------------ structures
    def _active(self, n_windows: int, limits: tuple[int, int], device: torch.device) -> Tensor:
        """(n_windows, max) bool: which of up to ``max`` structures each window has."""
        lo, hi = limits
        count = torch.randint(lo, hi + 1, (n_windows,), generator=self.generator, device=device)
        return torch.arange(hi, device=device)[None, :] < count[:, None]

    def _on_filaments(self, n_windows: int, row: Tensor) -> Tensor:
        """Labels on 1..K worm-like filaments per window, chosen uniformly along their length."""
        cfg, gen, device = self.cfg, self.generator, row.device
        h, w = self.shape_px
        k = cfg.filaments_per_window[1]
        n_steps, step_px = filament_steps(self.shape_px, self.pixel_size_nm)
        size = torch.tensor([w, h], device=device, dtype=torch.float32)
        start = torch.rand(n_windows, k, 2, generator=gen, device=device) * size
        heading = torch.rand(n_windows, k, 1, generator=gen, device=device) * (2 * math.pi)
        bend = math.sqrt(FILAMENT_STEP_UM / cfg.persistence_length_um)
        dtheta = torch.randn(n_windows, k, n_steps, generator=gen, device=device) * bend
        path = worm_like_paths(start, heading + torch.cumsum(dtheta, -1), step_px)
        inside = (path >= 0).all(-1) & (path[..., 0] < w) & (path[..., 1] < h)
        inside &= self._active(n_windows, cfg.filaments_per_window, device)[..., None]
        # Every window has a filament step inside (each chain passes through its start), so the
        # j-th inside step of a window is found in the flat running count of inside steps.
        per_window = inside.flatten(1).sum(1)
        first = torch.cumsum(per_window, 0) - per_window
        rank = first[row] + (
            torch.rand(row.numel(), generator=gen, device=device) * per_window[row]
        ).long().clamp(max=per_window[row] - 1)
        flat = torch.searchsorted(torch.cumsum(inside.flatten(), 0), rank, right=True)
        jitter_px = LABEL_JITTER_NM / self.pixel_size_nm
        xy = path.reshape(-1, 2)[flat]
        xy = xy + torch.randn(row.numel(), 2, generator=gen, device=device) * jitter_px
        phase = torch.rand(n_windows * k, generator=gen, device=device) * (2 * math.pi)
        along = (flat % n_steps).float() / n_steps
        z = filament_z(along, phase[flat // n_steps], self.z_range_nm)
        return torch.cat([self._wrap(xy), z[:, None]], 1)

    def _in_clusters(self, n_windows: int, row: Tensor) -> Tensor:
        """Gaussian clusters, 1..C per window, each of a radius drawn from the configured range."""
        cfg, gen, device = self.cfg, self.generator, row.device
        c = cfg.clusters_per_window[1]
        centre = uniform_positions(n_windows * c, self.shape_px, self.z_range_nm, gen, device)
        r0, r1 = cfg.cluster_radius_nm
        radius_nm = r0 + (r1 - r0) * torch.rand(n_windows * c, generator=gen, device=device)
        lo, hi = cfg.clusters_per_window
        count = torch.randint(lo, hi + 1, (n_windows,), generator=gen, device=device)
        pick = (torch.rand(row.numel(), generator=gen, device=device) * count[row]).long()
        cluster = row * c + pick.clamp(max=count[row] - 1)
        offset = torch.randn(row.numel(), 3, generator=gen, device=device)
        offset = offset * radius_nm[cluster, None]
        xy = centre[cluster, :2] + offset[:, :2] / self.pixel_size_nm
        z0, z1 = self.z_range_nm
        z = (centre[cluster, 2] + offset[:, 2]).clamp(z0, z1)
        return torch.cat([self._wrap(xy), z[:, None]], 1)

    def _wrap(self, xy: Tensor) -> Tensor:
        """Points pushed past an edge re-enter at the opposite one (keeps the count and density)."""
        h, w = self.shape_px
        size = torch.tensor([w, h], device=xy.device, dtype=xy.dtype)
        return torch.remainder(xy, size).clamp(max=size * (1 - 1e-6))
