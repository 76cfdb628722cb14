"""Traces and health figures the viewer plots (no Qt): density, laser power, rates, worker health.

Everything is indexed by camera frame (0-based), the common time axis of the density and laser
plots: a laser reading is placed at the newest frame seen when it arrived.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from live_decode.messages import FrameStats

FloatArray = npt.NDArray[np.float64]

_RESTART_FRAMES: Final = 1000
"""A frame index this far below the newest one means a new run: the traces start over."""


class _Series:
    """Columns of float64 that grow; beyond ``capacity`` rows the oldest are dropped.

    Dropping happens in halves (amortized O(1)); reads are contiguous views, valid until the
    next append.
    """

    def __init__(self, n_columns: int, capacity: int) -> None:
        self.capacity = capacity
        self._data = np.empty((n_columns, max(16, 2 * capacity)), np.float64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, rows: npt.NDArray[np.float64]) -> None:
        """Append (n_columns, k) values."""
        k = rows.shape[1]
        if k >= self.capacity:
            rows, k = rows[:, -self.capacity :], self.capacity
            self._n = 0
        if self._n + k > self._data.shape[1]:
            keep = self.capacity - k
            self._data[:, :keep] = self._data[:, self._n - keep : self._n]
            self._n = keep
        self._data[:, self._n : self._n + k] = rows
        self._n += k

    def column(self, i: int) -> FloatArray:
        start = max(0, self._n - self.capacity)
        return self._data[i, start : self._n]

    def clear(self) -> None:
        self._n = 0


class DensityTrace:
    """Per-frame density (emitters µm⁻² frame⁻¹) and localization count, with a smoothed copy.

    Parameters
    ----------
    capacity_frames
        Frames kept; older ones are forgotten.
    smooth_frames
        Trailing moving-average window of :meth:`smoothed`, in frames.
    """

    def __init__(self, capacity_frames: int = 100_000, smooth_frames: int = 25) -> None:
        self.smooth_frames = smooth_frames
        self._series = _Series(3, capacity_frames)
        self.latest_frame: int | None = None
        self.restarts = 0

    def __len__(self) -> int:
        return len(self._series)

    def add(self, stats: Sequence[FrameStats]) -> None:
        """Append frame stats (in frame order, as the worker publishes them)."""
        if not stats:
            return
        first = stats[0].frame
        if self.latest_frame is not None and first < self.latest_frame - _RESTART_FRAMES:
            self.clear()  # the frame counter went back: a new run
            self.restarts += 1
        rows = np.array([(s.frame, s.density_per_um2, s.count) for s in stats], np.float64).T
        self._series.append(rows)
        self.latest_frame = max(stats[-1].frame, self.latest_frame or 0)

    @property
    def frames(self) -> FloatArray:
        return self._series.column(0)

    @property
    def density_per_um2(self) -> FloatArray:
        return self._series.column(1)

    @property
    def counts(self) -> FloatArray:
        return self._series.column(2)

    def smoothed(self) -> FloatArray:
        """Trailing moving average of the density over ``smooth_frames`` (shorter at the start)."""
        d = self.density_per_um2
        if d.size == 0:
            return d.copy()
        w = max(1, self.smooth_frames)
        c = np.concatenate(([0.0], np.cumsum(d)))
        idx = np.arange(1, d.size + 1)
        lo = np.maximum(0, idx - w)
        return (c[idx] - c[lo]) / (idx - lo)

    def clear(self) -> None:
        self._series.clear()
        self.latest_frame = None


class LaserTrace:
    """Activation laser power (mW) against frame index, one point per reading."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._series = _Series(2, capacity)

    def __len__(self) -> int:
        return len(self._series)

    def add(self, frame: float, power_mw: float) -> None:
        self._series.append(np.array([[frame], [power_mw]], np.float64))

    def extend(self, frames: npt.ArrayLike, power_mw: npt.ArrayLike) -> None:
        """Add a series of readings at once (a recorded run's control trace)."""
        self._series.append(np.array([frames, power_mw], np.float64).reshape(2, -1))

    @property
    def frames(self) -> FloatArray:
        return self._series.column(0)

    @property
    def power_mw(self) -> FloatArray:
        return self._series.column(1)

    def clear(self) -> None:
        self._series.clear()


class RateMeter:
    """Events per second over the last ``window_s`` seconds (``time.monotonic`` clock)."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, n: int, now_s: float | None = None) -> None:
        now = time.monotonic() if now_s is None else now_s
        self._events.append((now, n))
        self._total += n
        self._expire(now)

    def rate(self, now_s: float | None = None) -> float:
        """Events/s in the window (0 with no events)."""
        now = time.monotonic() if now_s is None else now_s
        self._expire(now)
        return self._total / self.window_s

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window_s:
            self._total -= self._events.popleft()[1]


@dataclass(frozen=True)
class Health:
    """What the health panel shows: the worker's figures and what this viewer saw.

    ``dropped_source`` are frames the source dropped (reported by the worker); ``missed_transport``
    are results messages the PUB socket dropped for this viewer (sequence gaps); ``rejected`` are
    malformed messages. NaN means "not known yet".
    """

    worker_fps: float = math.nan
    latency_ms: float = math.nan
    queue_depth: int = 0
    dropped_source: int = 0
    missed_transport: int = 0
    rejected: int = 0
    errors: int = 0
    last_error: str = ""
    events: int = 0  # notices (EventMsg) of the worker and the density loop, no errors
    last_event: str = ""
    messages: int = 0
    locs_received: int = 0
    locs_per_s: float = 0.0
    frames_per_s: float = 0.0
    stream: str = "waiting"
    receiver_errors: int = 0
    draw_backlog: int = 0  # localizations received but not drawn yet
