"""The viewer's own live quality (no Qt): NeNA, FRC and drift from the batches it receives.

The viewer already receives every localization batch on the results channel, so it feeds them to
a :class:`~live_decode.quality.tracker.QualityTracker` itself (no extra socket): every
``QualityConfig.every_frames`` frames, as the supervisor does, at a cost independent of the run's
length. The tracker needs the field of view; batches that arrive before it is known (no preview
frame yet) are kept, up to ``max_buffered``. A finished run's ``quality.csv`` / ``drift.csv`` are
shown as they are (:meth:`LiveQuality.load`).

Also the model-mismatch alarm's banner text, from the worker's ``model_mismatch`` message.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode.config import QualityConfig
from live_decode.io.drift_csv import read_drift_csv
from live_decode.messages import Localizations
from live_decode.quality.drift import DriftTrace
from live_decode.quality.tracker import DRIFT_CSV, QUALITY_CSV, QualityTracker

FloatArray = npt.NDArray[np.float64]
_EMPTY = np.empty(0, np.float64)
_CHI2 = re.compile(r"frame (\d+): .*?χ²/px ([-+\d.eE]+|nan|inf) .*?\[([^\]]+)\]")


@dataclass(frozen=True)
class QualityTraces:
    """What the Quality panel draws.

    Attributes
    ----------
    frames, nena_nm, frc_nm : (K,) float
        Frame count at each update and NeNA precision / FRC resolution then (nm, NaN while not
        computable).
    drift_frames, drift_dx_nm, drift_dy_nm : (F,) float
        The current drift estimate per frame (nm, offset from frame 0's position).
    """

    frames: FloatArray
    nena_nm: FloatArray
    frc_nm: FloatArray
    drift_frames: FloatArray
    drift_dx_nm: FloatArray
    drift_dy_nm: FloatArray

    @property
    def latest_nena_nm(self) -> float:
        return float(self.nena_nm[-1]) if self.nena_nm.size else math.nan

    @property
    def latest_frc_nm(self) -> float:
        return float(self.frc_nm[-1]) if self.frc_nm.size else math.nan


class LiveQuality:
    """Feeds a :class:`QualityTracker` from received batches (see the module docstring).

    Not thread-safe: the receiver calls it from one thread and guards reads with a lock.
    """

    def __init__(self, cfg: QualityConfig | None = None, max_buffered: int = 2000) -> None:
        self.cfg = cfg or QualityConfig()
        self.max_buffered = max_buffered
        self.tracker: QualityTracker | None = None
        self.buffered_dropped = 0
        self._buffer: list[tuple[Localizations, int | None]] = []
        self._loaded: QualityTraces | None = None
        self._loaded_drift: DriftTrace | None = None

    def set_field_of_view(self, height_nm: float, width_nm: float) -> None:
        """Start the tracker (once) and feed it the batches kept meanwhile."""
        if self.tracker is not None or self._loaded is not None:
            return
        self.tracker = QualityTracker((height_nm, width_nm), self.cfg)
        buffered, self._buffer = self._buffer, []
        for locs, last in buffered:
            self.add(locs, last)

    def add(self, locs: Localizations, last_frame: int | None) -> bool:
        """One batch (copied if kept); True when it produced a new quality row."""
        if self._loaded is not None:
            return False
        if self.tracker is None:
            if len(self._buffer) < self.max_buffered:
                self._buffer.append((locs.copy(), last_frame))
            else:
                self.buffered_dropped += 1
            return False
        # A copy: the batch may view a ZeroMQ buffer.
        return self.tracker.add(locs.copy(), last_frame) is not None

    def load(self, run_dir: Path) -> bool:
        """Show a finished run's ``quality.csv`` / ``drift.csv``; False if it has neither."""
        q, d = run_dir / QUALITY_CSV, run_dir / DRIFT_CSV
        if not q.is_file() and not d.is_file():
            return False
        cols: dict[str, list[float]] = {"frame": [], "nena_nm": [], "frc_nm": []}
        if q.is_file():
            with q.open(newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    for k, values in cols.items():
                        values.append(_float(row.get(k)))
        drift = read_drift_csv(d) if d.is_file() else None
        df = _EMPTY if drift is None else drift["frame"].astype(np.float64)
        dx = _EMPTY if drift is None else drift["dx_nm"].astype(np.float64)
        dy = _EMPTY if drift is None else drift["dy_nm"].astype(np.float64)
        self._loaded = QualityTraces(
            np.asarray(cols["frame"], np.float64),
            np.asarray(cols["nena_nm"], np.float64),
            np.asarray(cols["frc_nm"], np.float64),
            df,
            dx,
            dy,
        )
        self._loaded_drift = DriftTrace(df, dx, dy) if df.size >= 2 else None
        self.tracker, self._buffer = None, []
        return True

    @property
    def drift(self) -> DriftTrace | None:
        """The drift estimate to correct the image with (None before two windows)."""
        if self._loaded is not None:
            return self._loaded_drift
        if self.tracker is None:
            return None
        trace = self.tracker.drift.trace
        return trace if trace.window_frame.size >= 2 else None

    def traces(self) -> QualityTraces:
        """Copies of the traces so far."""
        if self._loaded is not None:
            return self._loaded
        t = self.tracker
        if t is None:
            return QualityTraces(_EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY, _EMPTY)
        rows = t.rows
        frames = np.arange(max(t.last_frame + 1, 0), dtype=np.float64)
        dx, dy = t.drift.trace.at(frames)
        return QualityTraces(
            np.array([r.frame for r in rows], np.float64),
            np.array([r.nena_nm for r in rows], np.float64),
            np.array([r.frc_nm for r in rows], np.float64),
            frames,
            dx,
            dy,
        )


def _float(text: str | None) -> float:
    try:
        return float(text) if text else math.nan
    except ValueError:
        return math.nan


def mismatch_banner(message: str) -> str:
    """The banner line of a ``model_mismatch`` message: χ²/px, its band and the frame."""
    m = _CHI2.search(message)
    if m is None:
        return f"MODEL MISMATCH: {message}"
    frame, value, band = m.groups()
    return (
        f"MODEL MISMATCH at frame {frame}: χ²/px {value} outside the band [{band}] "
        "calibrated on the model's card — check camera gain/offset and the PSF"
    )
