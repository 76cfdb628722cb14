"""The control trace ``control.csv`` (one row per camera frame) and its plot.

Columns: ``frame`` (source frame index at the tick), ``density_per_um2`` (mean of the densities
that arrived at that tick; empty if none — they belong to frames a little earlier, by the
worker's latency), ``smoothed_per_um2``, ``target_per_um2``, ``actuator_value`` (mW applied after
the tick), ``mode``, ``event`` (``; ``-joined event messages, empty if none), ``data_age_s`` (s
since the oldest frame whose stats arrived at that tick was ticked; empty if none), ``held`` (why
those stats were not acted on: ``stale`` — older than ``max_stats_age_s`` — or ``settling`` —
taken before a resume ramp ended; empty if they were), and the run's cumulative
``safety_trips`` and ``saturations``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode.closeable import Closeable

TRACE_NAME = "control.csv"
PLOT_NAME = "control.png"
COLUMNS = (
    "frame",
    "density_per_um2",
    "smoothed_per_um2",
    "target_per_um2",
    "actuator_value",
    "mode",
    "event",
    "data_age_s",
    "held",
    "safety_trips",
    "saturations",
)
#: Rows between flushes; an event flushes at once so a crash keeps its reason on disk.
FLUSH_EVERY = 50


def _num(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6g}"


class ControlTrace(Closeable):
    """Writes ``control.csv`` row by row (creates the parent folder; overwrites a previous file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self._unflushed = 0
        self.rows = 0

    def write(
        self,
        frame: int,
        density_per_um2: float,
        smoothed_per_um2: float,
        target_per_um2: float,
        actuator_value: float,
        mode: str,
        events: tuple[str, ...] = (),
        *,
        data_age_s: float = math.nan,
        held: str = "",
        safety_trips: int = 0,
        saturations: int = 0,
    ) -> None:
        """Append one row; densities in emitters µm⁻² frame⁻¹, actuator value in mW, age in s."""
        self._writer.writerow(
            [
                frame,
                _num(density_per_um2),
                _num(smoothed_per_um2),
                _num(target_per_um2),
                _num(actuator_value),
                mode,
                "; ".join(events),
                _num(data_age_s),
                held,
                safety_trips,
                saturations,
            ]
        )
        self.rows += 1
        self._unflushed += 1
        if events or self._unflushed >= FLUSH_EVERY:
            self._file.flush()
            self._unflushed = 0

    def close(self) -> None:
        """Flush and close. Idempotent."""
        if not self._file.closed:
            self._file.close()


@dataclass(frozen=True)
class TraceData:
    """A control trace as arrays, (N,) each; missing numbers are NaN."""

    frame: npt.NDArray[np.int64]
    density_per_um2: npt.NDArray[np.float64]
    smoothed_per_um2: npt.NDArray[np.float64]
    target_per_um2: npt.NDArray[np.float64]
    actuator_value: npt.NDArray[np.float64]
    mode: tuple[str, ...]
    event: tuple[str, ...]
    data_age_s: npt.NDArray[np.float64]
    held: tuple[str, ...]
    safety_trips: npt.NDArray[np.int64]
    saturations: npt.NDArray[np.int64]


def read_control_trace(path: Path) -> TraceData:
    """Read a ``control.csv``.

    Raises
    ------
    ValueError
        If the header is not :data:`COLUMNS` (not a control trace, or another version).
    """
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != COLUMNS:
        raise ValueError(f"{path}: not a control trace; expected the header {','.join(COLUMNS)}")
    body = rows[1:]

    def col(i: int) -> npt.NDArray[np.float64]:
        return np.array([float(r[i]) if r[i] else math.nan for r in body], dtype=np.float64)

    return TraceData(
        frame=np.array([int(r[0]) for r in body], dtype=np.int64),
        density_per_um2=col(1),
        smoothed_per_um2=col(2),
        target_per_um2=col(3),
        actuator_value=col(4),
        mode=tuple(r[5] for r in body),
        event=tuple(r[6] for r in body),
        data_age_s=col(7),
        held=tuple(r[8] for r in body),
        safety_trips=np.array([int(r[9]) for r in body], dtype=np.int64),
        saturations=np.array([int(r[10]) for r in body], dtype=np.int64),
    )


def plot_control(csv_path: Path, png_path: Path, title: str | None = None) -> Path:
    """Plot density, smoothed density and target (top) and actuator value (bottom) vs frame.

    Frames with a safety event are marked by red lines. Uses matplotlib's Agg canvas directly
    (no pyplot, no GUI backend), so it is safe in any process.

    Returns
    -------
    Path
        ``png_path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = read_control_trace(csv_path)
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    f = data.frame
    top.plot(f, data.density_per_um2, ".", ms=1.5, color="0.6", label="measured")
    top.plot(f, data.smoothed_per_um2, lw=1.0, color="tab:blue", label="smoothed")
    top.plot(f, data.target_per_um2, lw=1.2, color="k", ls="--", label="target")
    top.set_ylabel("density (emitters µm⁻² frame⁻¹)")
    top.legend(loc="upper right", fontsize="small")
    bottom.plot(f, data.actuator_value, lw=1.0, color="tab:purple")
    bottom.set_ylabel("405 nm (mW)")
    bottom.set_xlabel("frame")
    auto = np.array([m != "off" for m in data.mode])
    if auto.any():
        shade = bottom.get_xaxis_transform()
        bottom.fill_between(f, 0, 1, where=auto, color="tab:green", alpha=0.08, transform=shade)
    for frame, event in zip(f, data.event, strict=True):
        if "safe" in event:
            for ax in (top, bottom):
                ax.axvline(frame, color="tab:red", lw=0.8, alpha=0.7)
    if title:
        fig.suptitle(title)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    return png_path
