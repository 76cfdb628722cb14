"""Density/laser traces, rates and the bounded series behind them."""

from __future__ import annotations

import numpy as np
import pytest

from live_decode.messages import FrameStats
from live_decode.viewer.density import DensityTrace, LaserTrace, RateMeter


def _stats(frames: range, density: float = 1.0) -> list[FrameStats]:
    return [FrameStats(f, 3, density * (f + 1), 1000.0, 10.0, 12.0) for f in frames]


def test_density_trace_holds_published_values() -> None:
    trace = DensityTrace(smooth_frames=3)
    trace.add(_stats(range(5)))
    np.testing.assert_array_equal(trace.frames, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(trace.density_per_um2, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(trace.counts, [3] * 5)
    np.testing.assert_allclose(trace.smoothed(), [1, 1.5, 2, 3, 4])  # trailing mean of 3
    assert trace.latest_frame == 4


def test_density_trace_forgets_the_oldest_beyond_capacity() -> None:
    trace = DensityTrace(capacity_frames=100)
    for start in range(0, 1000, 7):
        trace.add(_stats(range(start, min(start + 7, 1000))))
    assert len(trace.frames) == 100
    np.testing.assert_array_equal(trace.frames, np.arange(900, 1000))
    trace.add(_stats(range(1000, 1300)))  # a batch larger than the capacity
    np.testing.assert_array_equal(trace.frames, np.arange(1200, 1300))


def test_density_trace_starts_over_on_a_new_run() -> None:
    trace = DensityTrace()
    trace.add(_stats(range(5000, 5010)))
    trace.add(_stats(range(0, 3)))
    assert trace.restarts == 1
    np.testing.assert_array_equal(trace.frames, [0, 1, 2])


def test_laser_trace_and_empty_smoothing() -> None:
    laser = LaserTrace(capacity=4)
    assert DensityTrace().smoothed().size == 0
    for i in range(6):
        laser.add(i * 10, float(i))
    np.testing.assert_array_equal(laser.frames, [20, 30, 40, 50])
    np.testing.assert_array_equal(laser.power_mw, [2, 3, 4, 5])


def test_rate_meter_window() -> None:
    meter = RateMeter(window_s=1.0)
    meter.add(100, now_s=10.0)
    meter.add(50, now_s=10.5)
    assert meter.rate(now_s=10.9) == pytest.approx(150.0)
    assert meter.rate(now_s=11.2) == pytest.approx(50.0)
    assert meter.rate(now_s=20.0) == 0.0
