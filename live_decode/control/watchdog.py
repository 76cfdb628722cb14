"""The stats watchdog: has the loop been closed recently enough to trust it?

While the controller drives the laser, stats must keep arriving: if the worker stops, crashes or
falls silent, the controller would hold (or worse, integrate towards) a power chosen on stale
information. :class:`Watchdog` measures the silence since the last stats on an injectable clock
(tests advance a fake one instead of sleeping) and trips once per silence.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds on a monotonic clock, e.g. :func:`time.monotonic`."""


class Watchdog:
    """Trips when no stats arrived for longer than ``timeout_s`` while armed.

    Parameters
    ----------
    timeout_s
        Longest tolerated silence, s.
    clock
        Monotonic time source, s.
    """

    def __init__(self, timeout_s: float, clock: Clock = time.monotonic) -> None:
        if not timeout_s > 0:
            raise ValueError(f"watchdog timeout must be > 0 s, got {timeout_s}")
        self.timeout_s = timeout_s
        self._clock = clock
        self._last = clock()
        self.armed = False
        self.tripped = False
        self.trips = 0

    @property
    def silence_s(self) -> float:
        """Seconds since the last stats (or since arming, whichever is later)."""
        return self._clock() - self._last

    def arm(self) -> None:
        """Start watching (no-op if armed); the silence counts from now."""
        if not self.armed:
            self.armed = True
            self._last = self._clock()

    def disarm(self) -> None:
        """Stop watching (manual mode: the operator owns the laser)."""
        self.armed = False
        self.tripped = False

    def feed(self) -> bool:
        """Stats arrived: reset the silence. True if this ends a trip (the loop is closed again)."""
        self._last = self._clock()
        was, self.tripped = self.tripped, False
        return was

    def trip(self) -> None:
        """Mark as tripped by another fault (e.g. the worker's end of stream): no second report
        when the silence then passes the timeout; :meth:`feed` ends it as usual."""
        if self.armed:
            self.tripped = True

    def check(self) -> bool:
        """True exactly once per silence longer than the timeout, while armed."""
        if not self.armed or self.tripped or self.silence_s <= self.timeout_s:
            return False
        self.tripped = True
        self.trips += 1
        return True
