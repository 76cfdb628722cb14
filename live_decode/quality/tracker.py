"""One run's live quality: NeNA, FRC and drift from the localizations as they arrive.

:class:`QualityTracker` takes the worker's batches (:data:`~live_decode.messages.LOC_DTYPE`) in
frame order, keeps the incremental accumulators, and every ``every_frames`` frames fits NeNA and
computes the FRC (costs independent of the run's length so far). Drift is re-solved as each RCC
window completes. :meth:`QualityTracker.write` leaves ``quality.csv`` (one row per update),
``drift.csv`` (the drift of every frame, :mod:`live_decode.io.drift_csv`) and ``quality.png``.

Coordinates stay raw everywhere: the files keep what the network measured; the drift trace is a
separate file to subtract on request.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from live_decode.config import QualityConfig
from live_decode.io.drift_csv import DRIFT_DTYPE, drift_corrected, write_drift_csv
from live_decode.io.thunderstorm import read_thunderstorm_csv, write_thunderstorm_csv
from live_decode.messages import Localizations
from live_decode.quality.drift import DriftEstimator
from live_decode.quality.frc import FrcAccumulator
from live_decode.quality.nena import NenaAccumulator

log = logging.getLogger("live_decode.quality.tracker")
QUALITY_CSV, DRIFT_CSV, QUALITY_PNG = "quality.csv", "drift.csv", "quality.png"
CORRECTED_CSV = "locs_drift_corrected.csv"


@dataclass(frozen=True)
class QualityRow:
    """The quality after ``frame`` frames: NaN where not computable yet."""

    frame: int
    localizations: int
    nena_nm: float
    frc_nm: float
    drift_dx_nm: float
    drift_dy_nm: float
    elapsed_s: float


class QualityTracker:
    """Incremental NeNA, FRC and RCC drift over a field of view of ``extent_nm`` (height, width)."""

    def __init__(self, extent_nm: tuple[float, float], cfg: QualityConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.extent_nm = extent_nm
        self.nena = NenaAccumulator(frame_gap=cfg.nena_frame_gap)
        self.frc = FrcAccumulator(extent_nm, cfg.frc_pixel_nm, seed=seed)
        self.drift = DriftEstimator(extent_nm, window_frames=cfg.drift_window_frames)
        self.rows: list[QualityRow] = []
        self.localizations = 0
        self.last_frame = -1
        self._next_update = cfg.every_frames
        self._started = time.perf_counter()

    def add(self, locs: Localizations, last_frame: int | None = None) -> QualityRow | None:
        """Add one batch; ``last_frame`` is the batch's last frame (locs may be empty).

        Returns the new row when this batch crossed an update point, else None.
        """
        if len(locs):
            f, x, y = locs["frame"], locs["x_nm"], locs["y_nm"]
            self.nena.add(f, x, y)
            self.frc.add(x, y)
            self.drift.add(f, x, y)
            self.localizations += len(locs)
            self.last_frame = max(self.last_frame, int(f.max()))
        if last_frame is not None:
            self.last_frame = max(self.last_frame, last_frame)
        if self.last_frame + 1 >= self._next_update:
            self._next_update = (
                (self.last_frame + 1) // self.cfg.every_frames + 1
            ) * self.cfg.every_frames
            return self.update()
        return None

    def update(self) -> QualityRow:
        """Fit NeNA, compute the FRC and read the drift now; appended to :attr:`rows`."""
        nena_nm = self.nena.fit().sigma_nm
        frc_nm = math.nan
        if self.frc.n_locs >= 100:
            try:
                frc_nm = self.frc.compute(nena_nm).resolution_nm
            except ValueError as exc:  # a field too small for the FRC pixel
                log.warning("FRC not computed: %s", exc)
        dx, dy = self.drift.trace.at(np.array([float(max(self.last_frame, 0))]))
        row = QualityRow(
            frame=self.last_frame + 1,
            localizations=self.localizations,
            nena_nm=float(nena_nm),
            frc_nm=float(frc_nm),
            drift_dx_nm=float(dx[0]),
            drift_dy_nm=float(dy[0]),
            elapsed_s=round(time.perf_counter() - self._started, 3),
        )
        self.rows.append(row)
        return row

    def finish(self) -> QualityRow:
        """End of the run: close the drift window in progress and compute a last row."""
        self.drift.finish()
        if self.rows and self.rows[-1].frame == self.last_frame + 1:
            self.rows.pop()  # recomputed with the final drift
        return self.update()

    def write_corrected_copy(self, out: Path, locs_csv: Path) -> Path:
        """``locs_drift_corrected.csv``: the run's localizations minus the drift of their frame."""
        locs = read_thunderstorm_csv(locs_csv)
        frames = np.arange(max(self.last_frame + 1, 1))
        dx, dy = self.drift.trace.at(frames)
        trace = np.zeros(len(frames), dtype=DRIFT_DTYPE)
        trace["frame"], trace["dx_nm"], trace["dy_nm"] = frames, dx, dy
        path = out / CORRECTED_CSV
        write_thunderstorm_csv(path, drift_corrected(locs, trace))
        return path

    def write(self, out: Path) -> None:
        """``quality.csv``, ``drift.csv`` and ``quality.png`` into the run directory ``out``."""
        names = [f.name for f in fields(QualityRow)]
        with (out / QUALITY_CSV).open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=names)
            w.writeheader()
            for r in self.rows:
                w.writerow(asdict(r))
        frames = np.arange(max(self.last_frame + 1, 0))
        dx, dy = self.drift.trace.at(frames)
        write_drift_csv(out / DRIFT_CSV, frames, dx, dy)
        self._plot(out / QUALITY_PNG, frames, dx, dy)

    def _plot(self, path: Path, frames: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> None:
        from matplotlib.figure import Figure  # no pyplot: no GUI backend, thread-safe

        fig = Figure(figsize=(10, 3.2), constrained_layout=True)
        ax_p, ax_d = fig.subplots(1, 2)
        f = [r.frame for r in self.rows]
        ax_p.plot(f, [r.nena_nm for r in self.rows], "o-", label="NeNA precision")
        ax_p.plot(f, [r.frc_nm for r in self.rows], "s-", label="FRC resolution")
        ax_p.set_xlabel("frame")
        ax_p.set_ylabel("nm")
        ax_p.set_title("precision and resolution")
        ax_p.legend()
        ax_d.plot(frames, dx, label="x")
        ax_d.plot(frames, dy, label="y")
        ax_d.set_xlabel("frame")
        ax_d.set_ylabel("drift (nm)")
        ax_d.set_title(f"drift (RCC, {self.cfg.drift_window_frames}-frame windows)")
        ax_d.legend()
        fig.savefig(path, dpi=100)
