"""Fixed-size running aggregates for per-frame figures: memory flat over a day-long run.

A 1 kHz camera makes 28.8 million frames in 8 h; a Python list of one float per frame grows by
~32 bytes a frame (the float object plus its slot), i.e. ~1 GB. These aggregates keep O(1) state
instead:

- :class:`RunningMoments`: count, mean, standard deviation (Welford), min, max — exact.
- :class:`LogHistogram`: the same moments plus quantiles from a fixed log-spaced histogram,
  within half a bin (±1.2 % relative at the default 100 bins per decade), for positive figures
  spread over decades such as latencies.

Both ignore non-finite values and count them in ``skipped``. Pure numpy; no other live_decode
import, so any room (worker, supervisor, viewer) can use them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt


class RunningMoments:
    """Count, mean, standard deviation, min and max of a stream of numbers, in O(1) memory."""

    def __init__(self) -> None:
        self.count = 0
        self.skipped = 0
        self._mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean (Welford)
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        """Take one value; NaN/inf are counted in ``skipped`` and otherwise ignored."""
        x = float(value)
        if not math.isfinite(x):
            self.skipped += 1
            return
        self.count += 1
        delta = x - self._mean
        self._mean += delta / self.count
        self._m2 += delta * (x - self._mean)
        self.min = min(self.min, x)
        self.max = max(self.max, x)

    def extend(self, values: Iterable[float]) -> None:
        """Take several values (see :meth:`add`)."""
        for v in values:
            self.add(v)

    @property
    def mean(self) -> float:
        """Mean of the values taken (NaN before the first)."""
        return self._mean if self.count else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (NaN with fewer than two values)."""
        return math.sqrt(self._m2 / (self.count - 1)) if self.count > 1 else math.nan

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready ``count``, ``mean``, ``std``, ``min``, ``max`` (None where undefined)."""
        return {
            "count": self.count,
            "mean": _or_none(self.mean),
            "std": _or_none(self.std),
            "min": _or_none(self.min if self.count else math.nan),
            "max": _or_none(self.max if self.count else math.nan),
        }


class LogHistogram(RunningMoments):
    """Running moments plus quantiles from a histogram with log-spaced bins.

    Parameters
    ----------
    low, high
        Range of the bins (same unit as the values, e.g. ms); ``0 < low < high``. Values below
        ``low`` (zero and negatives included) fall in an underflow bin, values above ``high`` in
        an overflow bin; quantiles there interpolate towards the exact ``min`` / ``max``.
    bins_per_decade
        Resolution: a quantile is within a factor ``10 ** (0.5 / bins_per_decade)`` of the truth
        (±1.2 % at 100).

    Notes
    -----
    Memory is ``(decades × bins_per_decade + 2) × 8`` bytes whatever the number of values: 7 kB
    for the default 1 µs … 1000 s latency range.
    """

    def __init__(self, low: float = 1e-3, high: float = 1e6, bins_per_decade: int = 100) -> None:
        super().__init__()
        if not (0 < low < high and math.isfinite(high)) or bins_per_decade < 1:
            raise ValueError(
                f"LogHistogram needs 0 < low < high and bins_per_decade >= 1, got {low}, {high}, "
                f"{bins_per_decade}"
            )
        self.low, self.high = float(low), float(high)
        self._log_low = math.log10(low)
        self._per_decade = int(bins_per_decade)
        n = math.ceil((math.log10(high) - self._log_low) * bins_per_decade)
        # counts[0]: < low; counts[1..n]: the log bins; counts[n + 1]: >= high.
        self.counts: npt.NDArray[np.int64] = np.zeros(n + 2, dtype=np.int64)

    def _bin(self, x: float) -> int:
        if x < self.low:
            return 0
        if x >= self.high:
            return len(self.counts) - 1
        k = int((math.log10(x) - self._log_low) * self._per_decade)
        return 1 + min(k, len(self.counts) - 3)

    def _edge(self, k: int) -> float:
        """Lower edge of log bin ``k`` (1-based)."""
        return float(10 ** (self._log_low + (k - 1) / self._per_decade))

    def add(self, value: float) -> None:
        """Take one value; NaN/inf are counted in ``skipped`` and otherwise ignored."""
        before = self.count
        super().add(value)
        if self.count != before:
            self.counts[self._bin(float(value))] += 1

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 ≤ q ≤ 1), interpolated within its bin; NaN before any value."""
        if not 0 <= q <= 1:
            raise ValueError(f"a quantile must be within [0, 1], got {q}")
        if self.count == 0:
            return math.nan
        rank = q * self.count
        cum = np.cumsum(self.counts)
        k = int(np.searchsorted(cum, rank, side="left"))
        k = min(k, len(self.counts) - 1)
        below = float(cum[k - 1]) if k > 0 else 0.0
        frac = (rank - below) / float(self.counts[k]) if self.counts[k] else 0.0
        last = len(self.counts) - 1
        lo = self.min if k == 0 else self._edge(k)
        hi = self.low if k == 0 else self.max if k == last else self._edge(k + 1)
        lo, hi = max(lo, self.min), min(hi, self.max)
        linear = k in (0, last) or lo <= 0  # else geometric interpolation inside a log bin
        value = lo + frac * (hi - lo) if linear else lo * (hi / lo) ** frac
        return float(min(max(value, self.min), self.max))

    def to_dict(self) -> dict[str, float | int | None]:
        """As :meth:`RunningMoments.to_dict`, plus ``p50``, ``p90``, ``p99``."""
        d = super().to_dict()
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
            d[name] = _or_none(self.quantile(q))
        return d


def _or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
