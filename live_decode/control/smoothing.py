"""Smoothing of the per-frame density before it reaches the control law.

One frame's count is Poisson-noisy (√N) and the network can mis-count a frame (a flash, a focus
jump). A running median over ``window`` frames ignores such outliers; an exponential moving average
(α = 2 / (window + 1), the same mean lag of (window − 1) / 2 frames) is smoother for pure counting
noise. Non-finite values (frames with no measurement, gaps) are skipped, never counted as 0.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

import numpy as np

SmoothingKind = Literal["median", "ema"]


class DensitySmoother:
    """Running median or EMA of a density, emitters µm⁻² frame⁻¹.

    Parameters
    ----------
    kind
        ``"median"`` over the last ``window`` values, or ``"ema"`` with α = 2 / (window + 1).
    window
        Frames, >= 1 (1 = no smoothing).
    """

    def __init__(self, kind: SmoothingKind, window: int) -> None:
        if window < 1:
            raise ValueError(f"smoothing window must be >= 1 frame, got {window}")
        if kind not in ("median", "ema"):
            raise ValueError(f"smoothing kind must be 'median' or 'ema', got {kind!r}")
        self.kind: SmoothingKind = kind
        self.window = window
        self._alpha = 2.0 / (window + 1.0)
        self._values: deque[float] = deque(maxlen=window)
        self._ema = math.nan

    def reset(self) -> None:
        """Forget every value (after a fault the old values are stale)."""
        self._values.clear()
        self._ema = math.nan

    def push(self, density_per_um2: float) -> bool:
        """Add one frame's density; False (and ignored) if it is not finite."""
        x = float(density_per_um2)
        if not math.isfinite(x):
            return False
        self._values.append(x)
        self._ema = x if math.isnan(self._ema) else self._ema + self._alpha * (x - self._ema)
        return True

    @property
    def value(self) -> float:
        """The smoothed density, or NaN before the first finite value."""
        if not self._values:
            return math.nan
        if self.kind == "ema":
            return self._ema
        return float(np.median(np.fromiter(self._values, dtype=np.float64)))
