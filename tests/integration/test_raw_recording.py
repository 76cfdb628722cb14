"""Raw data kept: ``run`` records what the camera acquired, and its replay gives the same locs.

Real processes (``live-decode run`` with the simulated microscope, then ``live-decode localize``
on the recorded ``raw.ome.tif``), 64×64 px, one frame per network call in fp32 so both runs do
the same arithmetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
import yaml

from live_decode.inference.worker import CSV_NAME, WORKER_SUMMARY_NAME
from live_decode.io.calibration import CALIBRATION_NAME
from live_decode.io.movie import RAW_NAME, TiffMovie
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import Localizations
from live_decode.testing.frames import camera_movie

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
N_FRAMES = 80


def live_decode(*args: str, timeout_s: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "live_decode", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=timeout_s)


def config(tmp_path: Path) -> Path:
    data = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    data["microscope"]["exposure_ms"] = data["microscope"]["frame_interval_ms"] = 100
    data["inference"] = {"device": "cpu", "max_batch": 1, "speed": "reference", "amp": False}
    data["control"] = {"mode": "off"}
    path = tmp_path / "raw_test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def by_frame(locs: Localizations, frames: set[int]) -> Localizations:
    keep = locs[np.isin(locs["frame"], sorted(frames))]
    return keep[np.lexsort((keep["y_nm"], keep["x_nm"], keep["frame"]))]


def test_replaying_the_raw_recording_reproduces_the_live_localizations(
    tmp_path: Path, tiny_model: Path
) -> None:
    cfg = config(tmp_path)
    live = tmp_path / "live"
    proc = live_decode(
        "run", str(cfg), "--frames", str(N_FRAMES), "--headless", "--no-dashboard",
        "--out", str(live), "--model", str(tiny_model),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr

    raw = live / RAW_NAME
    movie = TiffMovie(raw)
    try:
        assert movie.shape == (N_FRAMES, 64, 64)  # every acquired frame, sent or dropped
        assert movie.frame_runs == [(0, N_FRAMES)]
    finally:
        movie.close()
    with tifffile.TiffFile(raw) as tif:
        assert tif.is_ome and 'PhysicalSizeX="0.1"' in (tif.ome_metadata or "")
    calibration = json.loads((live / CALIBRATION_NAME).read_text())["camera"]
    assert calibration["em_gain"] == {"value": 300.0, "source": f"config {cfg}"}

    replay = tmp_path / "replay"
    proc = live_decode(
        "localize", str(raw), "--config", str(cfg), "--model", str(tiny_model),
        "--out", str(replay),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    replayed = json.loads((replay / CALIBRATION_NAME).read_text())["camera"]
    assert replayed["em_gain"]["source"] == "file:live_decode camera metadata"

    worker = json.loads((live / WORKER_SUMMARY_NAME).read_text())
    live_locs = read_thunderstorm_csv(live / CSV_NAME)
    replay_locs = read_thunderstorm_csv(replay / CSV_NAME)
    # The live worker saw frames first..last (the camera ran before it was ready); a frame's
    # output depends on t−1, t, t+1, so frames whose neighbours it saw are compared.
    first, last = int(worker["first_frame"]), int(worker["last_frame"])
    compared = set(range(first + 1, last))
    assert len(compared) >= 10, f"the live worker localized only frames {first}..{last}"
    a, b = by_frame(live_locs, compared), by_frame(replay_locs, compared)
    assert len(a) == len(b) > 0
    for name in ("frame", "x_nm", "y_nm", "photons", "bg", "prob"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_gap_in_a_recording_resets_temporal_context_on_replay(
    tmp_path: Path, tiny_model: Path
) -> None:
    """Frames 0–5 and 9–14 recorded (6–8 lost upstream): ``localize`` of the file gives what the
    two runs give alone, frame numbers kept — the lost frames are never bridged."""
    from live_decode.io.movie import MovieRecorder
    from live_decode.pipeline.offline import localize_files

    frames = camera_movie((12, 48, 48), seed=3)
    indices = [*range(6), *range(9, 15)]
    camera = {"pixel_size_nm": 100.0, "baseline_adu": 100.0, "e_per_adu": 45.0,
              "em_gain": 300.0, "qe": 0.9, "exposure_ms": 30.0}  # fmt: skip

    def record(path: Path, idx: list[int], pixels: np.ndarray) -> Path:
        rec = MovieRecorder(path, camera, frame_interval_ms=30.0)
        for i, frame in zip(idx, pixels, strict=True):
            rec.append(frame, i)
        rec.close()
        return path

    def locs(path: Path, name: str) -> Localizations:
        localize_files([path], tmp_path / name, model=tiny_model, device="cpu")
        return read_thunderstorm_csv(tmp_path / name / CSV_NAME)

    gapped = locs(record(tmp_path / "gapped.ome.tif", indices, frames), "gapped")
    first = locs(record(tmp_path / "a.ome.tif", indices[:6], frames[:6]), "a")
    second = locs(record(tmp_path / "b.ome.tif", list(range(6)), frames[6:]), "b")
    second["frame"] += 9
    expected = np.concatenate([first, second])
    assert set(np.unique(gapped["frame"])) <= set(indices) and len(gapped) > 0
    every = set(indices)
    a, b = by_frame(gapped, every), by_frame(expected, every)
    assert len(a) == len(b)
    for name in ("frame", "x_nm", "y_nm", "photons"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
