"""The temporal-context ring buffer of frame features (t−1, t, t+1).

Frame t is emitted when frame t+1 arrives. At stream start, after a gap, and at the end of the
stream the missing neighbour is the edge frame itself (replicated), as offline inference does, so
streaming and offline analysis of the same movie give the same localizations. Features are cached,
so every frame passes the frame U-Net exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Window:
    """One frame ready for the context stage: its index and the three feature maps (F, H, W)."""

    index: int
    timestamp_ns: int
    prev: Tensor
    cur: Tensor
    next: Tensor


@dataclass(frozen=True)
class _Entry:
    index: int
    timestamp_ns: int
    features: Tensor


class FeatureRing:
    """Holds at most two frames' features; see the module docstring for the emission rule."""

    def __init__(self) -> None:
        self._prev: _Entry | None = None
        self._cur: _Entry | None = None

    @property
    def pending(self) -> int | None:
        """Index of the frame waiting for its successor, if any."""
        return None if self._cur is None else self._cur.index

    def push(self, index: int, timestamp_ns: int, features: Tensor) -> list[Window]:
        """Add frame ``index`` (features (F, H, W)); return the windows that became complete.

        A frame whose index does not follow the pending one is treated as after a gap: the
        pending frame is closed with its own features as t+1.
        """
        out: list[Window] = []
        new = _Entry(index, timestamp_ns, features)
        cur = self._cur
        if cur is not None and index != cur.index + 1:
            out.extend(self.break_context())
            cur = None
        if cur is not None:
            prev = self._prev if self._prev is not None else cur
            out.append(
                Window(cur.index, cur.timestamp_ns, prev.features, cur.features, new.features)
            )
        self._prev, self._cur = cur, new
        return out

    def break_context(self) -> list[Window]:
        """A gap or the end of the stream: close the pending frame with itself as t+1."""
        out: list[Window] = []
        cur = self._cur
        if cur is not None:
            prev = self._prev if self._prev is not None else cur
            out.append(
                Window(cur.index, cur.timestamp_ns, prev.features, cur.features, cur.features)
            )
        self._prev = self._cur = None
        return out
