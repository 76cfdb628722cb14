"""The evaluation report: n/a for figures that do not apply, and the low-photon selection flag."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from live_decode.config import Config
from live_decode.errors import LiveDecodeError
from live_decode.evaluation.report import (
    AXIAL_KEYS,
    LOW_DETECTION_FRACTION,
    check_ground_truth_fits,
    evaluate_localizations,
)
from live_decode.io.thunderstorm import GROUND_TRUTH_DTYPE
from live_decode.messages import LOC_DTYPE
from live_decode.strict_json import dumps, loads_strict

CONFIG = Config()  # Gaussian PSF, 100 nm pixels: isolation radius 700 nm
N_FRAMES, SPACING_NM = 60, 1600.0


def grid_ground_truth(seed: int = 0, z_sd_nm: float = 0.0) -> npt.NDArray[np.void]:
    """4 × 4 isolated emitters per frame (1.6 µm apart), photons uniform in [200, 5000)."""
    rng = np.random.default_rng(seed)
    xs = 800.0 + SPACING_NM * np.arange(4)
    x, y = (a.ravel() for a in np.meshgrid(xs, xs))
    gt = np.zeros(N_FRAMES * x.size, dtype=GROUND_TRUTH_DTYPE)
    gt["frame"] = np.repeat(np.arange(N_FRAMES), x.size)
    gt["id"] = np.arange(gt.size)
    gt["x_nm"], gt["y_nm"] = np.tile(x, N_FRAMES), np.tile(y, N_FRAMES)
    gt["z_nm"] = rng.normal(0, z_sd_nm, gt.size) if z_sd_nm else 0.0
    gt["photons"] = rng.uniform(200, 5000, gt.size)
    return gt


def selective_detector(
    gt: npt.NDArray[np.void], seed: int = 1, dim_below: float = 1160.0, three_d: bool = False
) -> npt.NDArray[np.void]:
    """Errors N(0, 20 nm) for bright emitters; dim ones (σ 100 nm) found only when lucky.

    Below ``dim_below`` photons an emitter is detected only if its error happens to be small
    (radius < 70 nm: ~22 % of them), the selection a real detector makes at low signal.
    """
    rng = np.random.default_rng(seed)
    dim = gt["photons"] < dim_below
    sd = np.where(dim, 100.0, 20.0)
    err = rng.normal(0, 1, (gt.size, 3)) * sd[:, None]
    keep = ~dim | (np.hypot(err[:, 0], err[:, 1]) < 70.0)
    locs = np.zeros(int(keep.sum()), dtype=LOC_DTYPE)
    locs["frame"] = gt["frame"][keep]
    locs["x_nm"] = gt["x_nm"][keep] + err[keep, 0]
    locs["y_nm"] = gt["y_nm"][keep] + err[keep, 1]
    locs["z_nm"] = gt["z_nm"][keep] + err[keep, 2] if three_d else 0.0
    locs["photons"], locs["prob"] = gt["photons"][keep], 0.9
    locs["sigma_x_nm"] = locs["sigma_y_nm"] = sd[keep]
    locs["sigma_z_nm"] = sd[keep] if three_d else np.nan
    return locs


@pytest.fixture(scope="module")
def report_2d():  # type: ignore[no-untyped-def]
    gt = grid_ground_truth()
    locs = selective_detector(gt)
    return evaluate_localizations(locs, gt, CONFIG, is_3d=False, frame_shape_px=(64, 64)), gt


def test_2d_axial_figures_are_not_applicable_not_zero(report_2d) -> None:  # type: ignore[no-untyped-def]
    report, _ = report_2d
    result = loads_strict(dumps(report.to_dict()))  # strict JSON: n/a is null
    for key in AXIAL_KEYS:
        assert result[key] is None, key
    assert result["not_applicable"] == list(AXIAL_KEYS)
    assert result["efficiency"] == pytest.approx(report.metrics.efficiency_lat)
    assert result["rmse_lat_nm"] > 0
    assert all(row["rmse_z_nm"] is None for row in result["rmse_vs_crlb"])
    assert isinstance(result["n_tp"], int) and isinstance(result["rmse_vs_crlb"][0]["n"], int)
    assert any("2-D model" in note for note in result["notes"])


def test_low_photon_bin_is_flagged_as_detection_selection(report_2d) -> None:  # type: ignore[no-untyped-def]
    report, gt = report_2d
    bins = report.photon_bins
    assert len(bins) == 5
    assert sum(b.n_emitters for b in bins) == gt.size  # every emitter is isolated
    lowest, rest = bins[0], bins[1:]
    # The lowest fifth (< ~1160 photons) lost ~78 % of its emitters to the detector ...
    assert lowest.low_detection and lowest.detected_fraction < LOW_DETECTION_FRACTION
    assert 0.12 < lowest.detected_fraction < 0.32
    assert all(not b.low_detection and b.detected_fraction == 1.0 for b in rest)
    # ... and the survivors' RMSE is far below the 100 nm error of a dim emitter: selection.
    assert lowest.rmse_x_nm < 50.0
    assert all(b.rmse_x_nm == pytest.approx(20.0, rel=0.25) for b in rest)
    # The √CRLB falls with photons, as it must.
    crlb = [b.sqrt_crlb_x_nm for b in bins]
    assert all(a > b for a, b in itertools.pairwise(crlb))
    flagged = [n for n in report.notes if "photons: only" in n]
    assert len(flagged) == 1 and f"{lowest.photons_lo:.0f}-{lowest.photons_hi:.0f}" in flagged[0]
    assert any("selection" in n and "√CRLB" in n for n in report.notes)


def test_3d_reports_axial_figures() -> None:
    gt = grid_ground_truth(z_sd_nm=200.0)
    locs = selective_detector(gt, three_d=True)
    report = evaluate_localizations(locs, gt, CONFIG, is_3d=True)
    result = report.to_dict()
    assert report.not_applicable == () and result["not_applicable"] == []
    assert isinstance(result["rmse_ax_nm"], float) and math.isfinite(result["rmse_ax_nm"])
    assert result["rmse_ax_nm"] > 20.0  # dz of the bright ones alone has sd 20 nm
    assert result["efficiency"] == pytest.approx(report.metrics.efficiency_vol)


def test_no_ground_truth_photons_gives_no_crlb_table() -> None:
    gt = grid_ground_truth()
    gt["photons"] = np.nan  # e.g. ground truth from a file without intensities
    report = evaluate_localizations(
        selective_detector(grid_ground_truth()), gt, CONFIG, is_3d=False
    )
    assert report.photon_bins == [] and not any("selection" in n for n in report.notes)
    assert report.metrics.n_tp > 0


def test_ground_truth_of_another_movie_is_refused() -> None:
    gt = grid_ground_truth()
    args = (Path("gt.csv"), Path("movie.tif"))
    check_ground_truth_fits(gt, *args, (N_FRAMES, 64, 64), 100.0)
    with pytest.raises(LiveDecodeError, match=r"does not fit movie\.tif"):
        check_ground_truth_fits(gt, *args, (N_FRAMES - 1, 64, 64), 100.0)
    with pytest.raises(LiveDecodeError, match="x, y up to 5600, 5600 nm"):
        check_ground_truth_fits(gt, *args, (N_FRAMES, 32, 32), 100.0)
