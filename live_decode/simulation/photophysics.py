"""Blinking in continuous time, in units of frame intervals.

An emitter appears at time t0, stays on for an exponential on-time, and emits a flux (photons per
full frame of on-time) drawn from N(mean, sigma). Photons in a frame = flux × the fraction of that
frame's exposure it was on. An emitter that spans several frames keeps its position, which is what
temporal context learns from.

Two uses:
- :func:`blinking_windows` makes independent short windows (training samples, DECODE's
  "samples" mode);
- :class:`FluorophorePool` runs an acquisition: a finite pool of fluorophores that the 405 nm laser
  activates and that bleach, so the active density answers the laser and decays with time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from live_decode.config import PhotophysicsConfig
from live_decode.simulation.emitters import Emitters, uniform_positions


def _overlap(t_on: Tensor, t_off: Tensor, start: Tensor | float, stop: Tensor | float) -> Tensor:
    """Length of [t_on, t_off) ∩ [start, stop), elementwise (0 if disjoint)."""
    lo = torch.maximum(t_on, torch.as_tensor(start, device=t_on.device, dtype=t_on.dtype))
    hi = torch.minimum(t_off, torch.as_tensor(stop, device=t_on.device, dtype=t_on.dtype))
    return (hi - lo).clamp(min=0.0)


def sample_flux(
    n: int, cfg: PhotophysicsConfig, generator: torch.Generator, device: torch.device | str = "cpu"
) -> Tensor:
    """Photon flux per full frame of on-time, (n,), ~ N(mean, sigma) clamped to >= 1 photon."""
    z = torch.randn(n, generator=generator, device=device)
    return (cfg.photons_mean + cfg.photons_sigma * z).clamp(min=1.0)


def blinking_windows(
    densities_per_um2: Tensor,
    n_frames: int,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    z_range_nm: tuple[float, float],
    cfg: PhotophysicsConfig,
    generator: torch.Generator,
    positions: Callable[[Tensor], Tensor] | None = None,
) -> Emitters:
    """Independent windows of ``n_frames`` frames, one per entry of ``densities_per_um2``.

    Emitters of window b, frame k get image index ``b * n_frames + k``. Emitters appear at rate
    λ = density·area/(1 + τ) per frame (an emitter of on-time T overlaps 1 + T frames), uniformly
    on [0, n_frames); the λτ emitters already on at t = 0 (stationary state) get t_on = 0 and, the
    on-time being memoryless, a fresh exponential on-time. Drawing appearance times uniformly on
    [-τ, n_frames) and clamping them at 0 does both, so every frame, the first included, sees
    Poisson(density·area) emitters.

    Parameters
    ----------
    densities_per_um2 : (B,) float
        Mean active emitters per µm² per frame in each window.
    positions : callable, optional
        Window index of each fluorophore (n,) int → its position (n, 3), x, y px and z nm (e.g.
        :class:`~live_decode.simulation.structures.StructuredPositions`); default: uniform.
    """
    device = densities_per_um2.device
    tau = cfg.on_time_mean_frames
    area = shape_px[0] * shape_px[1] * (pixel_size_nm / 1000.0) ** 2
    t_lo, t_hi = -tau, float(n_frames)
    mean_count = densities_per_um2 * area * (t_hi - t_lo) / (1.0 + tau)
    counts = torch.poisson(mean_count, generator=generator).long()
    n = int(counts.sum())
    window = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    if positions is None:
        xyz = uniform_positions(n, shape_px, z_range_nm, generator, device)
    else:
        xyz = positions(window)
    t_on = (t_lo + (t_hi - t_lo) * torch.rand(n, generator=generator, device=device)).clamp(min=0.0)
    on_time = torch.empty(n, device=device).exponential_(1.0 / tau, generator=generator)
    flux = sample_flux(n, cfg, generator, device)
    frames = torch.arange(n_frames, device=device, dtype=t_on.dtype)
    # (n, n_frames) fraction of each frame the emitter is on.
    frac = _overlap(t_on[:, None], (t_on + on_time)[:, None], frames[None, :], frames[None, :] + 1)
    em_ix, k = torch.nonzero(frac > 0, as_tuple=True)
    return Emitters(
        xyz=xyz[em_ix],
        photons=flux[em_ix] * frac[em_ix, k],
        frame=window[em_ix] * n_frames + k,
        id=em_ix,
    )


class FluorophorePool:
    """A finite pool of photoactivatable fluorophores, stepped one frame at a time.

    States: dark (activatable), on, bleached. A dark fluorophore activates at rate
    ``spontaneous + activation_per_mw × P405`` per frame interval, at a uniform time within the
    interval; it then stays on for an exponential on-time. When an on-event ends, it bleaches with
    ``bleach_probability``, else it returns to dark. Photons in a frame are the flux times the
    fraction of the exposure window ([t, t + exposure_fraction)) it was on.
    """

    DARK, ON, BLEACHED = 0, 1, 2

    def __init__(
        self,
        xyz: Tensor,
        cfg: PhotophysicsConfig,
        exposure_fraction: float,
        generator: torch.Generator,
    ) -> None:
        self.cfg = cfg
        self.xyz = xyz
        self.exposure_fraction = exposure_fraction
        self._gen = generator
        n = xyz.shape[0]
        self.state = torch.zeros(n, dtype=torch.int8)
        self.t_on = torch.zeros(n)
        self.t_off = torch.zeros(n)
        self.flux = sample_flux(n, cfg, generator)
        self.time = 0.0  # start of the next frame interval, in frame intervals

    def __len__(self) -> int:
        return int(self.xyz.shape[0])

    def counts(self) -> dict[str, int]:
        """How many fluorophores are dark, on and bleached."""
        return {
            "dark": int((self.state == self.DARK).sum()),
            "on": int((self.state == self.ON).sum()),
            "bleached": int((self.state == self.BLEACHED).sum()),
        }

    def step(self, laser_mw: float, frame_index: int = 0) -> Emitters:
        """Advance one frame interval under ``laser_mw`` of 405 nm; the emitters seen this frame."""
        cfg, gen, t = self.cfg, self._gen, self.time
        rate = cfg.spontaneous_activation_per_frame + cfg.activation_per_frame_per_mw * laser_mw
        p_act = 1.0 - float(torch.exp(torch.tensor(-rate)))
        dark = self.state == self.DARK
        activate = dark & (torch.rand(len(self), generator=gen) < p_act)
        n_act = int(activate.sum())
        if n_act:
            start = t + torch.rand(n_act, generator=gen)
            life = torch.empty(n_act).exponential_(1.0 / cfg.on_time_mean_frames, generator=gen)
            self.t_on[activate] = start
            self.t_off[activate] = start + life
            self.state[activate] = self.ON
        on = torch.nonzero(self.state == self.ON, as_tuple=True)[0]
        frac = _overlap(self.t_on[on], self.t_off[on], t, t + self.exposure_fraction)
        photons = self.flux[on] * frac / self.exposure_fraction
        seen = photons > 0
        # On-events that end within this interval: bleach or return to dark.
        ending = on[self.t_off[on] < t + 1.0]
        if ending.numel():
            bleach = torch.rand(ending.numel(), generator=gen) < cfg.bleach_probability
            self.state[ending] = torch.where(bleach, self.BLEACHED, self.DARK).to(torch.int8)
        self.time = t + 1.0
        ids = on[seen]
        return Emitters(
            xyz=self.xyz[ids],
            photons=photons[seen],
            frame=torch.full((ids.numel(),), frame_index, dtype=torch.long),
            id=ids,
        )
