"""The pipeline commands end to end, as a user runs them: ``live-decode demo`` and ``localize``.

Both run the bundled lite model on CPU as subprocesses and check the run directory they leave.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_decode.inference.worker import CSV_NAME, HDF5_NAME, WORKER_SUMMARY_NAME
from live_decode.io.picasso import read_picasso_hdf5
from live_decode.io.thunderstorm import read_thunderstorm_csv

REPO = Path(__file__).resolve().parents[2]
MOVIE = REPO.parent / "shared" / "data" / "movies" / "testStack_SimulatedMicrotubules.tif"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
RUN_FILES = ("locs.csv", "locs.hdf5", "locs.yaml", "summary.json")
PLOTS = ("reconstruction.png", "density.png")


def live_decode(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "live_decode", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=timeout_s)


def read_json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_demo_headless_writes_a_complete_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = live_decode("demo", "--frames", "60", "--headless", "--out", str(out), "--no-dashboard")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # --no-dashboard: plain status lines, no live table drawn with box characters.
    assert any(line.startswith("frames ") for line in proc.stdout.splitlines()), proc.stdout
    assert not set("┃│━─┏┗") & set(proc.stdout), proc.stdout
    for name in (*RUN_FILES, *PLOTS):
        assert (out / name).is_file(), f"{name} missing; run directory has {os.listdir(out)}"
    summary = read_json(out / "summary.json")
    assert summary["frames_in"] == 60
    # Every frame the simulated camera produced was either localized or dropped (and counted).
    processed, dropped = summary["frames_processed"], summary["frames_dropped"]
    assert isinstance(processed, int) and isinstance(dropped, int)
    assert processed + dropped == 60
    assert summary["worker_restarts"] == 0
    # The demo's density loop runs: its trips and saturations are counted in the summary.
    control = summary["control"]
    assert isinstance(control, dict) and control["safety_trips"] >= 0
    assert {"watchdog_trips", "saturations", "stale_episodes"} <= control.keys()
    csv = read_thunderstorm_csv(out / CSV_NAME)
    assert summary["localizations"] == len(csv) > 0
    assert len(read_picasso_hdf5(out / HDF5_NAME)) == len(csv)


def test_localize_a_real_movie_covers_every_frame(tmp_path: Path) -> None:
    if not MOVIE.is_file():
        pytest.skip(f"{MOVIE} is not present (the shared test data set)")
    n = 60  # the first 60 of 361 frames keep the test well under 30 s on a shared CPU
    movie = tmp_path / "microtubules_60.tif"
    with tifffile.TiffFile(MOVIE) as tif:
        tifffile.imwrite(movie, tif.asarray()[:n])
    out = tmp_path / "run"
    # The file has no camera metadata: the demo camera is assumed, so the card check is skipped.
    proc = live_decode("localize", str(movie), "--out", str(out), "--ignore-model-mismatch")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in (*RUN_FILES, *PLOTS):
        assert (out / name).is_file(), name

    worker = read_json(out / WORKER_SUMMARY_NAME)
    assert (worker["first_frame"], worker["last_frame"]) == (0, n - 1)
    assert worker["frames_processed"] == n
    assert worker["dropped_upstream"] == 0  # offline analysis is lossless
    summary = read_json(out / "summary.json")
    assert summary["frames_in"] == summary["frames_processed"] == n
    assert "frames_dropped" not in summary  # an offline summary has no live-only fields
    csv = read_thunderstorm_csv(out / CSV_NAME)
    frames = np.unique(csv["frame"])
    assert frames.min() >= 0 and frames.max() <= n - 1
    assert len(frames) > n // 2  # a microtubule movie has emitters in most frames
    h5 = read_picasso_hdf5(out / HDF5_NAME)
    np.testing.assert_array_equal(h5["frame"], csv["frame"])
