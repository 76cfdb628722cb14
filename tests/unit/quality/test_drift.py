"""RCC drift on localizations simulated with a known stage drift (200 nm linear + random walk)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from live_decode.quality.drift import DriftEstimator, solve_rcc

from .simulated_locs import simulate_locs

N_FRAMES = 3000


def _drift(seed: int) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0, 2 * np.pi)
    linear = np.outer(np.arange(N_FRAMES) / (N_FRAMES - 1), [np.cos(angle), np.sin(angle)]) * 200.0
    walk = np.cumsum(rng.normal(0.0, 0.4, size=(N_FRAMES, 2)), axis=0)  # ~22 nm rms over the run
    d = linear + walk
    return np.asarray(d - d[0])


@pytest.mark.parametrize("seed", [3, 8])
def test_rcc_recovers_linear_plus_random_walk_drift(seed: int) -> None:
    truth = _drift(seed)
    locs = simulate_locs(N_FRAMES, n_fluorophores=1500, drift_nm=truth, seed=seed)
    est = DriftEstimator((6400.0, 6400.0), window_frames=150)
    completed = 0
    for s in range(0, len(locs), 700):  # batches as the worker sends them
        b = locs[s : s + 700]
        completed += est.add(b["frame"], b["x_nm"], b["y_nm"])
    assert completed > 10  # windows were solved live, before the end
    trace = est.finish()
    dx, dy = trace.at(np.arange(N_FRAMES))
    ex, ey = dx - truth[:, 0], dy - truth[:, 1]
    # Drift is defined up to a constant (the reference position): compare after removing it.
    rms = np.sqrt(np.mean((ex - ex.mean()) ** 2 + (ey - ey.mean()) ** 2))
    assert rms < 10.0


def test_solve_rcc_rejects_an_outlier_pair() -> None:
    true = np.array([0.0, 10.0, 20.0, 30.0])
    ij = np.array([(i, j) for i in range(4) for j in range(i + 1, 4)])
    r = np.column_stack([true[ij[:, 1]] - true[ij[:, 0]], np.zeros(len(ij))])
    r[1] = (500.0, 0.0)  # a wrong correlation peak for the pair (0, 2)
    dy, dx = solve_rcc(4, ij, r, max_residual_nm=20.0)
    np.testing.assert_allclose(dy, true, atol=1e-6)
    np.testing.assert_allclose(dx, 0.0, atol=1e-6)


def test_no_windows_means_zero_drift() -> None:
    est = DriftEstimator((3200.0, 3200.0), window_frames=100)
    dx, dy = est.trace.at(np.arange(5))
    assert not dx.any() and not dy.any()
