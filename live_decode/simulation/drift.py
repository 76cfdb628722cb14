"""Stage drift: a linear creep plus a slow random walk, in nm, one step per frame.

Thermal expansion and a settling stage make a sample creep at a steady rate; mechanical noise
adds a random walk. The simulated microscope shifts every emitter of frame t by the drift d(t)
before rendering; the ground truth keeps the true (undrifted) positions and records d(t).
"""

from __future__ import annotations

import numpy as np

from live_decode.config import StageDriftConfig


class StageDrift:
    """d(t) = t · velocity + Σ_{s ≤ t} N(0, σ²) per axis, with d(0) = 0.

    Parameters
    ----------
    cfg : StageDriftConfig
        Linear velocity (nm/frame, x and y) and the random walk's step σ (nm/frame).
    seed : int
        Seed of the random walk.
    """

    def __init__(self, cfg: StageDriftConfig, seed: int) -> None:
        self.velocity_nm = np.asarray(cfg.velocity_nm_per_frame, dtype=np.float64)
        self.step_sigma_nm = float(cfg.random_walk_nm_per_frame)
        self._rng = np.random.default_rng(seed)
        self._walk_nm = np.zeros(2)
        self._frame = 0

    @property
    def enabled(self) -> bool:
        return bool(self.velocity_nm.any()) or self.step_sigma_nm > 0

    def next(self) -> tuple[float, float]:
        """The drift (dx, dy) in nm of the next frame; the first frame has none."""
        if self._frame > 0 and self.step_sigma_nm > 0:
            self._walk_nm += self._rng.normal(0.0, self.step_sigma_nm, size=2)
        d = self._frame * self.velocity_nm + self._walk_nm
        self._frame += 1
        return float(d[0]), float(d[1])
