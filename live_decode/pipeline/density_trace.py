"""The density trace of a run for ``density.png``, in memory that does not grow with the run."""

from __future__ import annotations

from typing import Any

import numpy as np

TRACE_POINTS = 4096
"""At most this many points are kept (a day at 1 kHz is 86 M frames)."""


class DensityTrace:
    """Mean density per block of frames, for ``density.png``: memory flat over any run length.

    Frames are averaged in blocks of ``frames_per_point``; when more than ``max_points`` blocks
    are held, neighbours merge and the block doubles (so a day at 1 kHz still plots finely).
    """

    def __init__(self, max_points: int = TRACE_POINTS) -> None:
        self.max_points = max_points
        self.frames_per_point = 1
        self._frame_sum: list[float] = []
        self._density_sum: list[float] = []
        self._n: list[int] = []
        self._block: int | None = None

    def add(self, frame: int, density_per_um2: float) -> None:
        block = frame // self.frames_per_point
        if self._block is None or block != self._block:
            self._frame_sum.append(0.0)
            self._density_sum.append(0.0)
            self._n.append(0)
            self._block = block
        self._frame_sum[-1] += frame
        self._density_sum[-1] += density_per_um2
        self._n[-1] += 1
        if len(self._n) > self.max_points:
            self._merge()

    def _merge(self) -> None:
        def pairs(values: list[Any]) -> list[Any]:
            return [sum(values[i : i + 2]) for i in range(0, len(values), 2)]

        self._frame_sum, self._density_sum, self._n = (
            pairs(self._frame_sum),
            pairs(self._density_sum),
            pairs(self._n),
        )
        self.frames_per_point *= 2
        self._block = None

    def __len__(self) -> int:
        return len(self._n)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean frame index, mean density µm⁻²) of each point, in order of arrival."""
        n = np.asarray(self._n, dtype=float)
        if not len(n):
            return np.zeros(0), np.zeros(0)
        return np.asarray(self._frame_sum) / n, np.asarray(self._density_sum) / n
