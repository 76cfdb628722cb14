"""Drift traces as CSV: one row per frame, ``frame`` (0-based), ``dx_nm``, ``dy_nm``.

The same file holds a simulation's true stage drift and a run's estimate (RCC): the position
offset of each frame from frame 0's, in nm (x = column). Subtract it to correct localizations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

DRIFT_DTYPE = np.dtype([("frame", "<i8"), ("dx_nm", "<f8"), ("dy_nm", "<f8")])
HEADER = "frame,dx_nm,dy_nm"


def write_drift_csv(
    path: str | Path, frame: npt.ArrayLike, dx_nm: npt.ArrayLike, dy_nm: npt.ArrayLike
) -> None:
    """Write (N,) frames and drifts (nm); the file is replaced whole (written, then renamed)."""
    f = np.asarray(frame, dtype=np.int64).ravel()
    dx, dy = np.asarray(dx_nm, np.float64).ravel(), np.asarray(dy_nm, np.float64).ravel()
    if not f.size == dx.size == dy.size:
        raise ValueError(f"frame, dx_nm, dy_nm differ in length: {f.size}, {dx.size}, {dy.size}")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(HEADER + "\n")
        for row in zip(f.tolist(), dx.tolist(), dy.tolist(), strict=True):
            fh.write(f"{row[0]},{row[1]:.3f},{row[2]:.3f}\n")
    tmp.replace(path)


def drift_corrected(
    locs: npt.NDArray[np.void], drift: npt.NDArray[np.void]
) -> npt.NDArray[np.void]:
    """A copy of ``locs`` (any dtype with frame, x_nm, y_nm) with each frame's drift removed.

    Frames outside the trace take the nearest end's drift.
    """
    out = locs.copy()
    if len(drift) == 0 or len(out) == 0:
        return out
    order = np.argsort(drift["frame"])
    f = drift["frame"][order]
    i = np.clip(np.searchsorted(f, out["frame"]), 0, len(f) - 1)
    out["x_nm"] = out["x_nm"] - drift["dx_nm"][order][i]
    out["y_nm"] = out["y_nm"] - drift["dy_nm"][order][i]
    return out


def read_drift_csv(path: str | Path) -> npt.NDArray[np.void]:
    """(N,) :data:`DRIFT_DTYPE` rows from a file of :func:`write_drift_csv`."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().strip()
    if header != HEADER:
        raise ValueError(f"{path}: not a drift CSV (header {header!r}, expected {HEADER!r})")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    out = np.zeros(len(data), dtype=DRIFT_DTYPE)
    if len(data):
        out["frame"], out["dx_nm"], out["dy_nm"] = data[:, 0], data[:, 1], data[:, 2]
    return out
