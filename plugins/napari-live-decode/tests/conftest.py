"""Shared fixtures: localization tables and files, a short live run of the embedded demo.

napari draws with OpenGL, which Qt's ``offscreen`` platform cannot give it: the widget and
viewer tests (marker ``qt``) need an X display; ``make test`` runs them under Xvfb
(``xvfb-run``, platform ``xcb``, no window shown). Without a display they are skipped, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import live_decode as ld

NO_DISPLAY = (
    "napari needs OpenGL through an X display: run these tests under Xvfb, as `make test` does "
    "(xvfb-run -a env QT_QPA_PLATFORM=xcb pytest plugins/napari-live-decode)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason=NO_DISPLAY)
    for item in items:
        if "qt" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def locs() -> pd.DataFrame:
    """200 localizations over 20 frames of the demo's 64 × 64 px (100 nm) field, with σ."""
    rng = np.random.default_rng(7)
    n = 200
    table = {c: np.zeros(n, np.float32) for c in ld.LOC_COLUMNS}
    table["frame"] = np.sort(rng.integers(0, 20, n)).astype(np.int64)
    table["x_nm"] = rng.uniform(50, 6350, n).astype(np.float32)
    table["y_nm"] = rng.uniform(50, 6350, n).astype(np.float32)
    table["photons"] = rng.uniform(500, 5000, n).astype(np.float32)
    table["bg"] = rng.uniform(5, 20, n).astype(np.float32)
    table["prob"] = rng.uniform(0.5, 1.0, n).astype(np.float32)
    table["sigma_x_nm"] = rng.uniform(5, 30, n).astype(np.float32)
    table["sigma_y_nm"] = rng.uniform(5, 30, n).astype(np.float32)
    table["sigma_photons"] = rng.uniform(10, 50, n).astype(np.float32)
    return pd.DataFrame(table)


@pytest.fixture
def loc_files(locs: pd.DataFrame, tmp_path: Path) -> dict[str, Path]:
    """``locs`` written by live_decode's writers: locs.csv, locs.hdf5 (+ .yaml), locs.decode.h5."""
    return ld.save(locs, tmp_path / "files", formats=("csv", "hdf5", "decode_h5"))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], ld.RunHandle]]:
    """Starts (on the first call; later calls return the same handle) the live pipeline on the
    embedded demo (simulated microscope, bundled model), 400 frames (a test may stop it
    sooner); stopped and waited for at the end of the module. Lazy, so a test makes its viewer
    first and joins the run from its first frames, however long napari takes to start."""
    handles: list[ld.RunHandle] = []

    def start() -> ld.RunHandle:
        if not handles:
            handles.append(ld.run(None, out=tmp_path_factory.mktemp("demo") / "run", frames=400))
        return handles[0]

    try:
        yield start
    finally:
        for handle in handles:
            if handle.running:
                handle.stop()
            handle.wait(timeout_s=180)
