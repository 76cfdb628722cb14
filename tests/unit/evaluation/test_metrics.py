"""Metrics: DECODE's expected numbers, hand-computed cases, and the σ / CRLB tables."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from live_decode.evaluation.matching import match_localizations
from live_decode.evaluation.metrics import (
    CRLB_TABLE_DTYPE,
    Metrics,
    calibration_curve,
    compute_metrics,
    efficiency,
    jaccard_index,
    rmse_nm,
    rmse_vs_crlb,
    sigma_calibration,
)
from live_decode.messages import LOC_DTYPE

nan = math.nan


def table(xyz: npt.ArrayLike, frame: npt.ArrayLike | int = 0) -> npt.NDArray[np.void]:
    xyz_nm = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(xyz_nm), dtype=LOC_DTYPE)
    out["frame"] = frame
    out["x_nm"], out["y_nm"], out["z_nm"] = xyz_nm.T
    return out


def same(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(
        (math.isnan(x) and math.isnan(y)) or x == pytest.approx(y)
        for x, y in zip(a, b, strict=True)
    )


@pytest.mark.parametrize(
    ("pred", "gt", "expected"),
    [
        (np.zeros((0, 3)), np.zeros((0, 3)), (nan, nan, nan)),
        ([[2, 0, 0]], [[0, 0, 0]], (2, 0, 2)),  # DECODE
        ([[5, 6, 0]], [[2, 2, 0]], (5, 0, 5)),  # DECODE
        ([[0, 0, 3]], [[0, 0, 0]], (0, 3, 3)),
        (
            [[3, 0, 0], [0, 0, 4]],
            [[0, 0, 0], [0, 0, 0]],
            (math.sqrt(4.5), math.sqrt(8), 5 / 2**0.5),
        ),
        ([[3, 4]], [[0, 0]], (5, nan, 5)),
    ],
)
def test_rmse(pred: npt.ArrayLike, gt: npt.ArrayLike, expected: tuple[float, ...]) -> None:
    assert same(rmse_nm(pred, gt), expected)


@pytest.mark.parametrize(
    ("pred", "gt"), [(np.zeros((2, 3)), np.zeros((3, 3))), (np.zeros((2, 4)), np.zeros((2, 4)))]
)
def test_rmse_rejects_bad_shapes(pred: npt.ArrayLike, gt: npt.ArrayLike) -> None:
    with pytest.raises(ValueError, match="same shape"):
        rmse_nm(pred, gt)


@pytest.mark.parametrize(
    ("counts", "expected"), [((0, 0, 0), nan), ((1, 0, 0), 1.0), ((0, 1, 0), 0.0), ((2, 1, 1), 0.5)]
)
def test_jaccard(counts: tuple[int, int, int], expected: float) -> None:
    assert same((jaccard_index(*counts),), (expected,))


@pytest.mark.parametrize(
    ("ji", "rmse", "alpha", "expected"),
    [
        (0.91204, 32.077, 1.0, 0.66739),  # DECODE
        (1.0, 0.0, 1.0, 1.0),
        (1.0, 40.0, 0.5, 0.8),  # (100 - 0.5 * 40) / 100
        (0.7, 40.0, 1.0, 0.5),  # (100 - hypot(30, 40)) / 100
        (nan, 10.0, 1.0, nan),
    ],
)
def test_efficiency(ji: float, rmse: float, alpha: float, expected: float) -> None:
    got = efficiency(ji, rmse, alpha)
    assert same((got,), (expected,)) or got == pytest.approx(expected, rel=1e-3)


def test_compute_metrics_by_hand() -> None:
    # Frame 0: two GT, one prediction 30 nm lateral / 40 nm axial off, one far-off FP.
    # Frame 1: one GT found 0 nm off.  → TP 2, FP 1, FN 1.
    gt = np.concatenate([table([[0, 0, 0], [1000, 1000, 0]], 0), table([[500, 500, 100]], 1)])
    pred = np.concatenate([table([[30, 0, 40], [5000, 5000, 0]], 0), table([[500, 500, 100]], 1)])
    m = compute_metrics(pred, gt)
    assert (m.n_tp, m.n_fp, m.n_fn) == (2, 1, 1)
    assert m.jaccard == pytest.approx(0.5)
    assert m.rmse_lat_nm == pytest.approx(math.sqrt(900 / 2))
    assert m.rmse_ax_nm == pytest.approx(math.sqrt(1600 / 2))
    assert m.rmse_vol_nm == pytest.approx(math.sqrt(2500 / 2))
    eff_lat = (100 - math.hypot(50, math.sqrt(450))) / 100
    eff_ax = (100 - math.hypot(50, 0.5 * math.sqrt(800))) / 100
    assert m.efficiency_lat == pytest.approx(eff_lat)
    assert m.efficiency_ax == pytest.approx(eff_ax)
    assert m.efficiency_vol == pytest.approx((eff_lat + eff_ax) / 2)


def test_metrics_to_dict_keys_and_empty_sets() -> None:
    empty = np.zeros(0, dtype=LOC_DTYPE)
    d = compute_metrics(empty, empty).to_dict()
    assert list(d) == [
        "jaccard", "rmse_lat_nm", "rmse_ax_nm", "rmse_vol_nm", "efficiency_lat",
        "efficiency_ax", "efficiency_vol", "n_tp", "n_fp", "n_fn",
    ]  # fmt: skip
    assert all(math.isnan(d[k]) for k in list(d)[:7])
    assert (d["n_tp"], d["n_fp"], d["n_fn"]) == (0, 0, 0)


def test_metrics_is_frozen() -> None:
    m = Metrics(1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1, 0, 0)
    with pytest.raises(AttributeError):
        m.jaccard = 0.5  # type: ignore[misc]


def test_match_is_reused_and_limits_apply() -> None:
    gt, pred = table([[0, 0, 0]]), table([[100, 0, 0]])
    assert compute_metrics(pred, gt, max_lateral_nm=50.0).n_tp == 0
    match = match_localizations(pred, gt)
    assert compute_metrics(pred, gt, match, max_lateral_nm=50.0).n_tp == 1


def test_rmse_vs_crlb_bins_by_gt_photons() -> None:
    gt = table([[0, 0, 0], [0, 0, 0], [0, 0, 0]], frame=[0, 1, 2])
    gt["photons"] = [100, 150, 5000]
    pred = table([[3, 0, 0], [0, 4, 0], [0, 0, 6]], frame=[0, 1, 2])
    crlb = [[2, 2, 10], [4, 4, 20], [1, 1, 5]]
    t = rmse_vs_crlb(pred, gt, match_localizations(pred, gt), crlb, [0, 200, 1000, 5000])
    assert t.dtype == CRLB_TABLE_DTYPE
    assert t["n"].tolist() == [2, 0, 1]  # 5000, the last upper edge, is inside the last bin
    assert t["rmse_x_nm"][0] == pytest.approx(math.sqrt(4.5))
    assert t["rmse_y_nm"][0] == pytest.approx(math.sqrt(8))
    assert t["sqrt_crlb_x_nm"][0] == pytest.approx(math.sqrt(10))  # √mean(CRLB) = √((4+16)/2)
    assert t["sqrt_crlb_z_nm"][0] == pytest.approx(math.sqrt(250))
    assert t["rmse_z_nm"][2] == pytest.approx(6) and t["sqrt_crlb_z_nm"][2] == pytest.approx(5)
    assert np.isnan(t["rmse_x_nm"][1]) and np.isnan(t["sqrt_crlb_x_nm"][1])  # empty bin
    assert t["photons_lo"].tolist() == [0, 200, 1000] and t["photons_hi"][-1] == 5000
    only = rmse_vs_crlb(pred, gt, match_localizations(pred, gt), crlb, [0, 200, 1000, 5000],
                        include=[False, True, True])  # fmt: skip
    assert only["n"].tolist() == [1, 0, 1] and only["rmse_y_nm"][0] == pytest.approx(4)
    with pytest.raises(ValueError, match="include"):
        rmse_vs_crlb(pred, gt, match_localizations(pred, gt), crlb, [0, 1], include=[True])


def test_rmse_vs_crlb_checks_shapes() -> None:
    gt = table([[0, 0, 0]])
    m = match_localizations(gt, gt)
    with pytest.raises(ValueError, match="sqrt_crlb_nm"):
        rmse_vs_crlb(gt, gt, m, np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="photon_bin_edges"):
        rmse_vs_crlb(gt, gt, m, np.zeros((1, 2)), [1, 0])


def test_sigma_calibration_by_hand() -> None:
    gt = table(np.zeros((3, 3)), frame=[0, 1, 2])
    pred = table([[10, 5, 0], [20, 5, 0], [30, 5, 0]], frame=[0, 1, 2])
    pred["sigma_x_nm"] = [10, 20, 30]  # proportional to |dx|: r = 1
    pred["sigma_y_nm"] = [5, 5, 5]  # constant: r undefined
    cal = sigma_calibration(pred, gt, match_localizations(pred, gt))
    assert cal.n == 3
    assert cal.pearson_x == pytest.approx(1.0)
    assert math.isnan(cal.pearson_y)
    assert cal.rmse_to_rms_sigma_x == pytest.approx(1.0)  # error = σ exactly
    assert cal.rmse_to_rms_sigma_y == pytest.approx(1.0)
    assert cal.binned_pearson_x == pytest.approx(1.0)  # 3 pairs → 3 bins, RMSE = σ
    assert math.isnan(cal.pearson_ideal_y) and math.isnan(cal.binned_pearson_y)
    # Ceiling by hand: σ = 10, 20, 30 → var 200/3, E[σ²] 1400/3, E[σ] 20.
    c = math.sqrt(2 / math.pi)
    assert cal.pearson_ideal_x == pytest.approx(c * math.sqrt((200 / 3) / (1400 / 3 - c**2 * 400)))
    assert set(cal.to_dict()) == {
        "pearson_x", "pearson_y", "pearson_ideal_x", "pearson_ideal_y",
        "binned_pearson_x", "binned_pearson_y", "rmse_to_rms_sigma_x", "rmse_to_rms_sigma_y", "n",
    }  # fmt: skip


def test_sigma_calibration_of_perfectly_calibrated_errors() -> None:
    """Errors drawn from N(0, σ²): Pearson reaches the ceiling, the curve is the diagonal."""
    rng = np.random.default_rng(7)
    n = 40_000
    sigma = rng.lognormal(np.log(8.0), 0.6, size=(n, 2))
    gt = table(np.zeros((n, 3)), frame=np.arange(n))
    pred = table(np.column_stack([sigma * rng.standard_normal((n, 2)), np.zeros(n)]),
                 frame=np.arange(n))  # fmt: skip
    pred["sigma_x_nm"], pred["sigma_y_nm"] = sigma[:, 0], sigma[:, 1]
    cal = sigma_calibration(pred, gt, match_localizations(pred, gt))
    assert cal.n == n
    for r, ideal, binned, ratio in (
        (cal.pearson_x, cal.pearson_ideal_x, cal.binned_pearson_x, cal.rmse_to_rms_sigma_x),
        (cal.pearson_y, cal.pearson_ideal_y, cal.binned_pearson_y, cal.rmse_to_rms_sigma_y),
    ):
        assert 0.4 < ideal < 0.8  # a single |error| is a noisy read-out of σ
        assert r == pytest.approx(ideal, abs=0.02)
        assert binned > 0.97
        assert ratio == pytest.approx(1.0, rel=0.03)
    # σ that does not know which emitter is hard: same ceiling, no correlation.
    pred["sigma_x_nm"] = rng.permutation(sigma[:, 0])
    shuffled = sigma_calibration(pred, gt, match_localizations(pred, gt))
    assert shuffled.pearson_ideal_x == pytest.approx(cal.pearson_ideal_x)
    assert abs(shuffled.pearson_x) < 0.03 and abs(shuffled.binned_pearson_x) < 0.8


def test_calibration_curve_bins() -> None:
    sigma = np.arange(1.0, 21.0)
    mean_sigma, rmse = calibration_curve(sigma, sigma, n_bins=4)
    assert mean_sigma.tolist() == pytest.approx([3.0, 8.0, 13.0, 18.0])
    expected = [np.sqrt(np.mean(np.arange(lo, lo + 5) ** 2)) for lo in (1, 6, 11, 16)]
    assert rmse == pytest.approx(expected)
    assert calibration_curve(np.zeros(0), np.zeros(0))[0].size == 0


def test_sigma_calibration_anticorrelated_and_empty() -> None:
    gt = table(np.zeros((2, 3)), frame=[0, 1])
    pred = table([[10, 10, 0], [20, 20, 0]], frame=[0, 1])
    pred["sigma_x_nm"] = pred["sigma_y_nm"] = [30, 10]
    cal = sigma_calibration(pred, gt, match_localizations(pred, gt))
    assert cal.pearson_x == pytest.approx(-1.0) and cal.pearson_y == pytest.approx(-1.0)
    empty = np.zeros(0, dtype=LOC_DTYPE)
    cal = sigma_calibration(empty, empty, match_localizations(empty, empty))
    assert cal.n == 0 and math.isnan(cal.pearson_x) and math.isnan(cal.rmse_to_rms_sigma_x)
