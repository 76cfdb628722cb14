"""The network's raw count corrected with its held-out count curve, and the range it calls for."""

from __future__ import annotations

import numpy as np
import pytest

from live_decode.training.recount import (
    CountCurve,
    correct_count,
    corrected_densities,
    count_peak,
    unreliable_count,
    widened_range,
)


def curve(true: list[float], counted: list[float]) -> CountCurve:
    t, c = np.asarray(true, dtype=np.float64), np.asarray(counted, dtype=np.float64)
    ones = np.ones_like(t)
    return CountCurve(t, c, ones, ones)


LINEAR = curve([0.5, 1.0, 2.0, 4.0], [0.4, 0.8, 1.6, 3.2])  # recall 0.8, no false positives
SATURATING = curve([1.0, 2.0, 4.0, 8.0], [0.9, 1.6, 2.4, 2.8])  # misses more the denser it is


@pytest.mark.parametrize(
    ("raw", "the_curve", "expected"),
    [
        (0.0, LINEAR, 0.0),
        (0.2, LINEAR, 0.25),  # below the curve: the first point's ratio
        (1.2, LINEAR, 1.5),  # interpolated
        (4.0, LINEAR, 5.0),  # beyond it: the last segment extrapolated
        (2.0, SATURATING, 3.0),  # 1.6 → 2, 2.4 → 4: halfway
        (2.6, SATURATING, 6.0),  # the undercount grows with density: far above the raw count
        (3.0, SATURATING, 10.0),  # beyond: the last segment (slope 0.1) extrapolated
    ],
)
def test_a_raw_count_is_corrected_with_the_count_curve(
    raw: float, the_curve: CountCurve, expected: float
) -> None:
    assert correct_count(raw, the_curve) == pytest.approx(expected)


def test_false_positives_lower_the_estimate_and_a_dip_does_not_break_the_inversion() -> None:
    overcounting = curve([1.0, 2.0], [1.5, 3.0])  # precision 2/3
    assert correct_count(2.25, overcounting) == pytest.approx(1.5)
    dip = curve([1.0, 2.0, 3.0, 4.0], [1.0, 1.9, 1.85, 3.0])  # noise: monotone envelope
    assert correct_count(1.9, dip) == pytest.approx(2.0)
    assert correct_count(2.45, dip) == pytest.approx(3.0)  # halfway from (1.9, 2) to (3, 4)
    np.testing.assert_allclose(corrected_densities(np.array([0.4, 1.2]), LINEAR), [0.5, 1.5])


def test_a_count_that_falls_with_density_is_not_trusted_for_a_dense_setup() -> None:
    falling = curve([0.5, 1.0, 2.0, 4.0, 8.0], [0.5, 1.0, 1.8, 0.6, 0.1])
    assert count_peak(falling) == (2.0, 1.8)
    assert count_peak(SATURATING) is None and count_peak(LINEAR) is None
    assert unreliable_count(0.9, falling, prior_per_um2=1.0) is None  # both say: sparse
    assert "falls with the density beyond 2.00" in str(unreliable_count(0.1, falling, 5.0))
    assert "peaks at 1.80" in str(unreliable_count(2.5, falling, 1.0))
    flat = curve([1.0, 2.0, 4.0], [1.0, 1.5, 1.5])
    assert "levelled off" in str(unreliable_count(2.0, flat, 1.0))
    assert unreliable_count(3.5, LINEAR, 1.0) is None  # still growing: extrapolated


@pytest.mark.parametrize(
    ("before", "densest", "sparsest", "after"),
    [
        ((0.0, 6.0), 3.0, 0.5, (0.0, 6.0)),  # well inside: unchanged
        ((0.0, 6.0), 4.7, 1.0, (0.0, 6.0)),  # below 80 % of the top
        ((0.0, 6.0), 5.0, 1.0, (0.0, 7.5)),  # near the top: 1.5 × the densest frames
        ((0.0, 6.0), 9.0, 1.0, (0.0, 13.5)),  # beyond it
        ((1.0, 6.0), 3.0, 0.6, (0.4, 6.0)),  # sparser than the low end
        ((0.0, 20.0), 2.0, 0.1, (0.0, 20.0)),  # never narrowed
    ],
)
def test_the_range_widens_only_where_the_movie_reaches_its_edge(
    before: tuple[float, float],
    densest: float,
    sparsest: float,
    after: tuple[float, float],
) -> None:
    assert widened_range(before, densest, sparsest) == pytest.approx(after)
