"""Stage drift of the simulated microscope: statistics of the walk, frames shifted, truth kept."""

from __future__ import annotations

import numpy as np
import pytest

from live_decode.config import Config, StageDriftConfig, config_from_dict
from live_decode.io.drift_csv import read_drift_csv, write_drift_csv
from live_decode.simulation.drift import StageDrift
from live_decode.simulation.microscope import SimulatedMicroscope


def test_linear_plus_walk_statistics() -> None:
    """Mean over many walks = the linear creep; spread grows as σ·√t."""
    cfg = StageDriftConfig(velocity_nm_per_frame=(0.1, -0.05), random_walk_nm_per_frame=0.5)
    t = 400

    def end(seed: int) -> tuple[float, float]:
        drift = StageDrift(cfg, seed)
        return [drift.next() for _ in range(t)][-1]

    ends = np.array([end(seed) for seed in range(300)])
    np.testing.assert_allclose(ends.mean(axis=0), [0.1 * (t - 1), -0.05 * (t - 1)], atol=4.0)
    assert ends.std(axis=0) == pytest.approx([0.5 * np.sqrt(t - 1)] * 2, rel=0.15)


def test_no_drift_by_default() -> None:
    drift = StageDrift(StageDriftConfig(), seed=0)
    assert not drift.enabled
    assert {drift.next() for _ in range(5)} == {(0.0, 0.0)}


def _cfg(drift: dict[str, object] | None) -> Config:
    mic: dict[str, object] = {"fov_px": [24, 24], "seed": 3, "pool_per_um2": 400.0}
    if drift is not None:
        mic["drift"] = drift
    return config_from_dict({"microscope": mic, "background": {"variation_fraction": 0.0}})


def test_frames_shift_and_truth_stays() -> None:
    """A drift of exactly one pixel in x shifts the noise-free image by one column."""
    plain = SimulatedMicroscope(_cfg(None), warm_up_frames=30)
    moved = SimulatedMicroscope(_cfg({"velocity_nm_per_frame": [100.0, 0.0]}), warm_up_frames=30)
    plain.next_frame()
    moved.next_frame()
    a, b = plain.next_frame(), moved.next_frame()  # second frame: drift = 100 nm = 1 px in x
    assert b.drift_nm == (100.0, 0.0)
    np.testing.assert_array_equal(a.truth, b.truth)  # same emitters, true positions
    # Same truth, same camera noise stream: columns 1.. of the moved frame are the plain ones
    # moved right, up to the noise and the light that fell off the edge.
    diff = b.adu[:, 2:].astype(float) - a.adu[:, 1:-1].astype(float)
    same = a.adu[:, 2:].astype(float) - a.adu[:, 1:-1].astype(float)
    assert np.abs(diff).mean() < 0.8 * np.abs(same).mean()


def test_drift_csv_round_trip(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "drift.csv"
    write_drift_csv(path, [0, 1, 2], [0.0, 1.5, 3.25], [0.0, -0.5, -1.0])
    rows = read_drift_csv(path)
    assert rows["frame"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(rows["dx_nm"], [0.0, 1.5, 3.25])
    np.testing.assert_allclose(rows["dy_nm"], [0.0, -0.5, -1.0])
