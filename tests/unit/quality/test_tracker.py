"""The run's quality tracker: updates every N frames, files a person (and a script) can read."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from live_decode.config import QualityConfig
from live_decode.io.drift_csv import read_drift_csv
from live_decode.io.thunderstorm import read_thunderstorm_csv, write_thunderstorm_csv
from live_decode.quality.tracker import QualityTracker

from .simulated_locs import simulate_locs


def test_tracker_rows_every_n_frames_and_files(tmp_path: Path) -> None:
    n = 1200
    drift = np.column_stack([np.linspace(0, 60, n), np.zeros(n)])
    locs = simulate_locs(n, n_fluorophores=800, drift_nm=drift, seed=3)
    cfg = QualityConfig(every_frames=400, drift_window_frames=100, frc_pixel_nm=8.0)
    tracker = QualityTracker((6400.0, 6400.0), cfg)
    rows = []
    for s in range(0, len(locs), 900):
        b = locs[s : s + 900]
        row = tracker.add(b)
        if row is not None:
            rows.append(row)
    # A row in the batch that crosses each 400-frame mark (batches end at any frame).
    assert [r.frame // 400 for r in rows] == [1, 2, 3]
    final = tracker.finish()
    assert final.frame == n and final.localizations == len(locs)
    assert math.isfinite(final.nena_nm) and abs(final.nena_nm - 12.0) < 2.0
    assert math.isfinite(final.frc_nm) and final.frc_nm > final.nena_nm
    assert abs(final.drift_dx_nm - 60.0) < 10.0  # the drift at the last frame
    tracker.write(tmp_path)
    with (tmp_path / "quality.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["frame"]) for r in table] == [r.frame for r in rows]
    trace = read_drift_csv(tmp_path / "drift.csv")
    assert len(trace) == n
    assert (tmp_path / "quality.png").stat().st_size > 10_000


def test_empty_batches_still_advance_the_frame() -> None:
    tracker = QualityTracker((3200.0, 3200.0), QualityConfig(every_frames=50))
    row = tracker.add(simulate_locs(1)[:0], last_frame=60)
    assert row is not None and row.frame == 61 and math.isnan(row.nena_nm)


def test_drift_corrected_copy_removes_the_drift(tmp_path: Path) -> None:
    n = 1000
    drift = np.column_stack([np.linspace(0, 80, n), np.linspace(0, -40, n)])
    locs = simulate_locs(n, n_fluorophores=800, drift_nm=drift, seed=9)
    truth = simulate_locs(n, n_fluorophores=800, seed=9)  # the same draws without drift
    write_thunderstorm_csv(tmp_path / "locs.csv", locs)
    tracker = QualityTracker((6400.0, 6400.0), QualityConfig(drift_window_frames=100))
    tracker.add(locs)
    tracker.finish()
    path = tracker.write_corrected_copy(tmp_path, tmp_path / "locs.csv")
    corrected = read_thunderstorm_csv(path)
    raw = read_thunderstorm_csv(tmp_path / "locs.csv")
    assert len(corrected) == len(raw) == len(locs)
    # Raw keeps the drift; the copy is within a few nm of the undrifted positions.
    err = np.hypot(corrected["x_nm"] - truth["x_nm"], corrected["y_nm"] - truth["y_nm"])
    raw_err = np.hypot(raw["x_nm"] - truth["x_nm"], raw["y_nm"] - truth["y_nm"])
    assert np.median(raw_err) > 20.0
    assert np.median(err) < 8.0
