"""Greedy matching: DECODE's test cases, the limits, and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from live_decode.evaluation.matching import isolated, match_localizations, matched_errors_nm
from live_decode.messages import LOC_DTYPE


def table(xyz: npt.ArrayLike, frame: npt.ArrayLike | int = 0) -> npt.NDArray[np.void]:
    xyz_nm = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(xyz_nm), dtype=LOC_DTYPE)
    out["frame"] = frame
    out["x_nm"], out["y_nm"], out["z_nm"] = xyz_nm.T
    return out


ORIGIN = table([[0.0, 0.0, 0.0]])


@pytest.mark.parametrize(
    ("gt_xyz", "matched"),
    [
        ([1.9, 0, 0], True),
        ([2.1, 0, 0], False),
        ([0, 0, -5000], True),  # no axial limit
        ([1.5, 1.5, 0], False),  # lateral 2.12
        ([0, 2.0, 0], True),  # the limit itself is inside
    ],
)
def test_lateral_filter_as_decode(gt_xyz: list[float], matched: bool) -> None:
    m = match_localizations(ORIGIN, table([gt_xyz]), max_lateral_nm=2.0, max_axial_nm=None)
    assert m.n_tp == int(matched)


@pytest.mark.parametrize(("dz", "matched"), [(499.0, True), (500.0, True), (501.0, False)])
def test_axial_limit(dz: float, matched: bool) -> None:
    m = match_localizations(ORIGIN, table([[0, 0, dz]]))
    assert m.n_tp == int(matched)


FOUR = [[-0.5, -0.5, 0], [0.6, -0.5, 0], [-0.4, 0.5, 0], [0.35, 0.35, 0]]


def test_kernel_picks_nearest_prediction_as_decode() -> None:
    m = match_localizations(table(FOUR), ORIGIN, max_lateral_nm=1.0, max_axial_nm=2.0)
    assert m.pred_index.tolist() == [3] and m.gt_index.tolist() == [0]
    assert (m.n_tp, m.n_fp, m.n_fn) == (1, 3, 0)
    assert m.fp_index.tolist() == [0, 1, 2]


def test_kernel_symmetric_case_as_decode() -> None:
    m = match_localizations(ORIGIN, table(FOUR), max_lateral_nm=1.0, max_axial_nm=2.0)
    assert m.gt_index.tolist() == [3]
    assert (m.n_tp, m.n_fp, m.n_fn) == (1, 0, 3)
    assert m.fn_index.tolist() == [0, 1, 2]


def test_empty_sets() -> None:
    empty = np.zeros(0, dtype=LOC_DTYPE)
    for pred, gt, counts in [(empty, empty, (0, 0, 0)), (ORIGIN, empty, (0, 1, 0))]:
        m = match_localizations(pred, gt)
        assert (m.n_tp, m.n_fp, m.n_fn) == counts
        assert matched_errors_nm(pred, gt, m).shape == (0, 3)
    assert match_localizations(empty, ORIGIN).n_fn == 1


def test_statistical_tp_fraction_as_decode() -> None:
    rng = np.random.default_rng(42)
    n = 1000
    gt = table(np.zeros((n, 3)), frame=np.arange(n))
    pred = table(np.column_stack([rng.normal(0, 1, n), np.zeros((n, 2))]), frame=np.arange(n))
    m = match_localizations(pred, gt, max_lateral_nm=1.0)
    assert m.n_tp / n == pytest.approx(0.7, abs=0.1)


def test_never_matches_across_frames() -> None:
    m = match_localizations(table([[0, 0, 0]], frame=1), table([[0, 0, 0]], frame=2))
    assert (m.n_tp, m.n_fp, m.n_fn) == (0, 1, 1)


def test_greedy_takes_global_minimum_not_first_come() -> None:
    # p1 is 5 nm from g0 (the closest pair), so greedy takes p1-g0 although p0-g0 + p1-g1 would
    # match both; p0 is 45 nm from g1, out of reach.
    pred = table([[10, 0, 0], [-5, 0, 0]])
    gt = table([[0, 0, 0], [-35, 0, 0]])
    m = match_localizations(pred, gt, max_lateral_nm=40.0)
    assert sorted(zip(m.pred_index.tolist(), m.gt_index.tolist(), strict=True)) == [(1, 0)]
    errors = matched_errors_nm(pred, gt, m)
    np.testing.assert_allclose(errors, [[-5, 0, 0]])


def test_non_finite_predictions_never_match() -> None:
    pred = table([[math.nan, 0.0, 0.0], [1.0, 0.0, 0.0]])
    m = match_localizations(pred, ORIGIN)
    assert m.pred_index.tolist() == [1] and m.n_fp == 1


def test_missing_field_is_named() -> None:
    bad = np.zeros(1, dtype=[("frame", "i8"), ("x_nm", "f4"), ("y_nm", "f4")])
    with pytest.raises(ValueError, match="z_nm"):
        match_localizations(ORIGIN, bad)


def brute_force(pred: npt.NDArray[np.void], gt: npt.NDArray[np.void]) -> list[tuple[int, int]]:
    """The sequential rule: repeatedly take the global argmin of the masked distance matrix."""
    pairs = []
    for f in np.unique(gt["frame"]):
        ip, ig = np.flatnonzero(pred["frame"] == f), np.flatnonzero(gt["frame"] == f)
        p = np.column_stack([pred[k][ip] for k in ("x_nm", "y_nm", "z_nm")]).astype(float)
        g = np.column_stack([gt[k][ig] for k in ("x_nm", "y_nm", "z_nm")]).astype(float)
        d = p[:, None] - g[None]
        dist = np.sqrt((d**2).sum(-1))
        dist[(np.hypot(d[..., 0], d[..., 1]) > 250) | (np.abs(d[..., 2]) > 500)] = np.inf
        while dist.size and np.isfinite(dist).any():
            a, b = np.unravel_index(np.argmin(dist), dist.shape)
            pairs.append((int(ip[a]), int(ig[b])))
            dist[a, :] = np.inf
            dist[:, b] = np.inf
    return sorted(pairs)


def test_equals_brute_force_on_dense_random_frames() -> None:
    rng = np.random.default_rng(7)
    n_frames, per_frame = 20, 60
    n = n_frames * per_frame
    frames = np.repeat(np.arange(n_frames), per_frame)
    gt_xyz = np.column_stack([rng.uniform(0, 2000, (n, 2)), rng.uniform(-600, 600, n)])
    gt = table(gt_xyz, frames)
    keep = rng.random(n) < 0.85
    pred_xyz = gt_xyz[keep] + rng.normal(0, [80, 80, 250], (int(keep.sum()), 3))
    pred = np.concatenate([table(pred_xyz, frames[keep]), table(gt_xyz[:100], frames[:100] + 1)])
    m = match_localizations(pred, gt)
    got = sorted(zip(m.pred_index.tolist(), m.gt_index.tolist(), strict=True))
    assert got == brute_force(pred, gt)
    assert m.n_tp + m.n_fp == len(pred) and m.n_tp + m.n_fn == len(gt)


def test_isolated_looks_within_the_frame_only() -> None:
    xyz = [[0, 0, 0], [300, 0, 0], [2000, 0, 0], [2000, 0, 0], [5000, 5000, 0]]
    t = table(xyz, frame=[0, 0, 0, 1, 0])
    # 0 and 1 are 300 nm apart; 2 and 3 share x, y but not the frame.
    assert isolated(t, 500.0).tolist() == [False, False, True, True, True]
    assert isolated(t, 299.0).all()
    assert isolated(t[:1], 500.0).tolist() == [True]
    assert isolated(t[:0], 500.0).size == 0


def test_isolated_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 5, 300)
    t = table(np.column_stack([rng.uniform(0, 5000, (300, 2)), np.zeros(300)]), frames)
    d = np.hypot(t["x_nm"][:, None] - t["x_nm"], t["y_nm"][:, None] - t["y_nm"])
    close = (d <= 400.0) & (frames[:, None] == frames) & ~np.eye(300, dtype=bool)
    assert isolated(t, 400.0).tolist() == (~close.any(axis=1)).tolist()
