"""Running aggregates: exact moments, quantiles within half a log bin, memory independent of N."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from live_decode.running_stats import LogHistogram, RunningMoments


def test_moments_equal_numpy_and_skip_non_finite() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 5000)
    m = RunningMoments()
    m.extend(x.tolist())
    m.extend([math.nan, math.inf, -math.inf])
    assert m.count == 5000 and m.skipped == 3
    assert m.mean == pytest.approx(x.mean(), rel=1e-12)
    assert m.std == pytest.approx(x.std(ddof=1), rel=1e-10)
    assert (m.min, m.max) == (x.min(), x.max())
    empty = RunningMoments().to_dict()
    assert empty == {"count": 0, "mean": None, "std": None, "min": None, "max": None}


@pytest.mark.parametrize(
    ("name", "sample"),
    [
        ("lognormal latencies", lambda r: r.lognormal(np.log(20.0), 0.8, 20000)),
        (
            "bimodal: fast frames and stalls",
            lambda r: np.r_[r.normal(5, 0.5, 8500), r.normal(2000, 50, 1500)],
        ),
        ("uniform over 6 decades", lambda r: 10 ** r.uniform(-2, 4, 20000)),
    ],
)
def test_quantiles_within_half_a_bin(name: str, sample: object) -> None:
    rng = np.random.default_rng(1)
    x = np.abs(sample(rng))  # type: ignore[operator]
    h = LogHistogram(bins_per_decade=100)
    for v in x:
        h.add(float(v))
    half_bin = 10 ** (0.5 / 100)  # 1.16 %
    for q in (0.01, 0.5, 0.9, 0.99, 0.999):
        true = float(np.quantile(x, q))
        assert true / half_bin**2 <= h.quantile(q) <= true * half_bin**2, (name, q)
    assert h.quantile(0.0) == x.min() and h.quantile(1.0) == x.max()
    assert h.mean == pytest.approx(x.mean())


def test_out_of_range_values_and_zero() -> None:
    h = LogHistogram(low=1.0, high=100.0, bins_per_decade=10)
    for v in (0.0, 0.0, 0.5, 50.0, 5000.0):
        h.add(v)
    assert h.counts[0] == 3 and h.counts[-1] == 1 and h.count == 5
    assert h.quantile(0.0) == 0.0 and h.quantile(1.0) == 5000.0
    assert 0.0 <= h.quantile(0.5) <= 1.0
    assert math.isnan(LogHistogram().quantile(0.5))
    with pytest.raises(ValueError, match="quantile"):
        h.quantile(1.5)
    with pytest.raises(ValueError, match="low < high"):
        LogHistogram(low=0.0)


def test_state_does_not_grow_with_the_values() -> None:
    h = LogHistogram()
    size = sys.getsizeof(h.counts) + sys.getsizeof(h.__dict__)
    for v in np.linspace(0.1, 1e4, 100_000):
        h.add(float(v))
    assert sys.getsizeof(h.counts) + sys.getsizeof(h.__dict__) == size
