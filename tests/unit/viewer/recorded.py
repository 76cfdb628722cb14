"""A small recorded run directory, written with the project's own writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from live_decode.control.trace import ControlTrace
from live_decode.io.picasso import PicassoWriter
from live_decode.io.thunderstorm import write_thunderstorm_csv
from live_decode.messages import CameraMeta

from .synthetic import CAMERA_PX_NM, FOV_PX, camera_meta, make_locs

N_FRAMES = 20
LASER_MW = [float(f) * 0.5 for f in range(N_FRAMES)]


def spots(frame: int) -> list[tuple[float, float]]:
    """frame % 4 + 1 emitters, at places that move with the frame."""
    return [(300.0 + 200 * k + 10 * frame, 400.0 + 150 * k) for k in range(frame % 4 + 1)]


def write_recorded_run(run_dir: Path, camera: CameraMeta | None = None) -> Path:
    """locs.csv/.hdf5/.yaml, control.csv and raw.ome.tif of a 20-frame run (no frame 7 locs)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    locs = np.concatenate([make_locs(f, spots(f)) for f in range(N_FRAMES) if f != 7])
    write_thunderstorm_csv(run_dir / "locs.csv", locs)
    meta = camera or camera_meta()
    with PicassoWriter(
        run_dir / "locs.hdf5",
        width_px=FOV_PX[1],
        height_px=FOV_PX[0],
        pixel_size_nm=meta.pixel_size_nm,
        n_frames=N_FRAMES,
        extra_info={"model": "demo_lite: temporal"},
    ) as writer:
        writer.append(locs)
    with ControlTrace(run_dir / "control.csv") as trace:
        for f in range(N_FRAMES):
            trace.write(f, 0.5, 0.5, 0.8, LASER_MW[f], "auto")
    yy, xx = np.indices(FOV_PX)
    frames = np.full((N_FRAMES, *FOV_PX), 100.0)
    for f in range(N_FRAMES):
        for x_nm, y_nm in spots(f):
            xi, yi = x_nm / CAMERA_PX_NM, y_nm / CAMERA_PX_NM
            frames[f] += 400 * np.exp(-((xx + 0.5 - xi) ** 2 + (yy + 0.5 - yi) ** 2) / 2.0)
    tifffile.imwrite(run_dir / "raw.ome.tif", frames.astype(np.uint16), ome=True)
    return run_dir
