"""NeNA and FRC: against the simulated precision and against Picasso on the same localizations.

Localizations are simulated directly (blinking fluorophores, precision 12 nm in x and y), fed to
the accumulators in batches as the worker would send them, and given to Picasso's
``postprocess.nena`` / ``postprocess.frc`` in Picasso's own units (px, pixel centres at integers).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from live_decode.messages import Localizations
from live_decode.quality.frc import FrcAccumulator, frc_from_images
from live_decode.quality.nena import NenaAccumulator

from .simulated_locs import simulate_locs

PRECISION_NM = 12.0
PIXEL_NM = 100.0
FOV_NM = 6400.0


@pytest.fixture(scope="module")
def locs() -> Localizations:
    return simulate_locs(3000, fov_nm=FOV_NM, precision_nm=PRECISION_NM, seed=1)


def _feed_nena(locs: Localizations, batch: int = 500) -> NenaAccumulator:
    acc = NenaAccumulator()
    for s in range(0, len(locs), batch):
        b = locs[s : s + batch]
        acc.add(b["frame"], b["x_nm"], b["y_nm"])
    return acc


@pytest.fixture(scope="module")
def picasso_results(locs: Localizations) -> dict[str, Any]:
    postprocess = pytest.importorskip(
        "picasso.postprocess", reason="picassosr (+ statsmodels, sqlalchemy) not installed"
    )
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "frame": locs["frame"],
            "x": locs["x_nm"] / PIXEL_NM - 0.5,
            "y": locs["y_nm"] / PIXEL_NM - 0.5,
            "lpx": locs["sigma_x_nm"] / PIXEL_NM,
            "lpy": locs["sigma_y_nm"] / PIXEL_NM,
        }
    )
    side = FOV_NM / PIXEL_NM
    info = [{"Pixelsize": PIXEL_NM, "Width": int(side), "Height": int(side)}]
    _, nena_px = postprocess.nena(df.copy(), info)
    frc = postprocess.frc(df.copy(), info, ((-0.5, -0.5), (side - 0.5, side - 0.5)))
    return {"nena_nm": float(nena_px) * PIXEL_NM, "frc_nm": float(frc["resolution"])}


def test_nena_recovers_the_simulated_precision(locs: Localizations) -> None:
    result = _feed_nena(locs).fit()
    assert result.n_pairs > 10_000
    assert result.sigma_nm == pytest.approx(PRECISION_NM, rel=0.15)


def test_nena_agrees_with_picasso(locs: Localizations, picasso_results: dict[str, Any]) -> None:
    ours = _feed_nena(locs).fit().sigma_nm
    assert ours == pytest.approx(picasso_results["nena_nm"], rel=0.10)


def test_frc_agrees_with_picasso(locs: Localizations, picasso_results: dict[str, Any]) -> None:
    nena = _feed_nena(locs).fit().sigma_nm
    acc = FrcAccumulator((FOV_NM, FOV_NM))
    for s in range(0, len(locs), 700):
        acc.add(locs["x_nm"][s : s + 700], locs["y_nm"][s : s + 700])
    result = acc.compute(nena)
    assert result.n_locs == len(locs)
    assert result.resolution_nm == pytest.approx(picasso_results["frc_nm"], rel=0.10)


def test_nena_is_independent_of_batching_and_lags_one_frame(locs: Localizations) -> None:
    one = NenaAccumulator()
    one.add(locs["frame"], locs["x_nm"], locs["y_nm"])
    many = _feed_nena(locs, batch=37)  # frames split across batches
    np.testing.assert_array_equal(one.counts, many.counts)


def test_nena_worse_precision_gives_larger_nena() -> None:
    coarse = simulate_locs(1500, precision_nm=25.0, seed=4)
    acc = NenaAccumulator()
    acc.add(coarse["frame"], coarse["x_nm"], coarse["y_nm"])
    assert acc.fit().sigma_nm == pytest.approx(25.0, rel=0.15)


def test_frame_gap_undoes_temporal_correlation() -> None:
    """Errors shared over 3 frames (a temporal-context network): adjacent-frame NeNA is too
    small; pairing frames 3 apart, whose errors are independent, gives the precision back."""
    locs = simulate_locs(2000, on_frames=8.0, error_window_frames=3, seed=6)
    values = {}
    for gap in (1, 3):
        acc = NenaAccumulator(frame_gap=gap)
        acc.add(locs["frame"], locs["x_nm"], locs["y_nm"])
        values[gap] = acc.fit().sigma_nm
    # Adjacent errors correlate by 2/3: the difference has variance 2σ²/3, NeNA ≈ σ/√3.
    assert values[1] == pytest.approx(PRECISION_NM / np.sqrt(3.0), rel=0.15)
    assert values[3] == pytest.approx(PRECISION_NM, rel=0.15)


def test_nena_without_enough_pairs_is_nan() -> None:
    acc = NenaAccumulator()
    acc.add([0, 1], [100.0, 103.0], [100.0, 99.0])
    assert math.isnan(acc.fit().sigma_nm)


def test_frc_of_independent_noise_never_crosses_high() -> None:
    """Two halves with nothing in common: beyond the rings of the shared mask, no correlation."""
    rng = np.random.default_rng(0)
    a = rng.poisson(2.0, size=(201, 201)).astype(float)
    b = rng.poisson(2.0, size=(201, 201)).astype(float)
    result = frc_from_images(a, b, pixel_nm=10.0)
    assert np.mean(np.abs(result.curve[20:])) < 0.1  # noise ~ 1/√(π·ring) per ring
    # The crossing is inside the mask's rings (< 10), i.e. coarser than 201 px · 10 nm / 10.
    assert np.isnan(result.resolution_nm) or result.resolution_nm > 201.0


def test_frc_resolution_grows_with_precision() -> None:
    values = []
    for precision in (8.0, 20.0):
        locs = simulate_locs(1500, precision_nm=precision, seed=5)
        acc = FrcAccumulator((FOV_NM, FOV_NM))
        acc.add(locs["x_nm"], locs["y_nm"])
        values.append(acc.compute(precision).resolution_nm)
    assert values[0] < values[1]
