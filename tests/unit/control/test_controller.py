"""The control law against hand-computed steps: PI, bumpless start, rate limit, anti-windup."""

from __future__ import annotations

import math
from typing import Any

import pytest

from live_decode.config import ControlConfig
from live_decode.control.controller import DensityController
from live_decode.control.smoothing import DensitySmoother


def make(
    output: float = 5.0, limits: tuple[float, float] = (0.0, 100.0), **cfg: Any
) -> DensityController:
    base: dict[str, Any] = {
        "mode": "auto",
        "kp": 2.0,
        "ki": 0.5,
        "target_density_per_um2": 1.0,
        "smoothing_frames": 1,  # no smoothing: the law sees the raw density
        "max_rate_mw_per_frame": 100.0,
    }
    return DensityController(ControlConfig(**(base | cfg)), limits, output)


# --------------------------------------------------------------------------- smoothing
@pytest.mark.parametrize(
    ("kind", "window", "values", "expected"),
    [
        ("median", 3, [1.0, 9.0, 2.0], 2.0),  # the outlier does not move a median
        ("median", 3, [1.0, 9.0, 2.0, 3.0], 3.0),  # window slides: median(9, 2, 3)
        ("median", 2, [1.0, 2.0], 1.5),
        ("ema", 3, [1.0, 3.0], 2.0),  # α = 2 / (3 + 1) = 0.5: 1 + 0.5·(3 − 1)
        ("ema", 3, [1.0, 3.0, 0.0], 1.0),  # 2 + 0.5·(0 − 2)
        ("ema", 1, [1.0, 3.0], 3.0),  # window 1: no smoothing
        ("median", 3, [1.0, math.nan, 2.0, math.inf], 1.5),  # non-finite values are skipped
    ],
)
def test_smoother(kind: Any, window: int, values: list[float], expected: float) -> None:
    s = DensitySmoother(kind, window)
    for v in values:
        s.push(v)
    assert s.value == pytest.approx(expected)


def test_smoother_is_nan_until_a_value_and_after_reset() -> None:
    s = DensitySmoother("median", 5)
    assert math.isnan(s.value)
    assert not s.push(math.nan)
    assert math.isnan(s.value)
    s.push(2.0)
    s.reset()
    assert math.isnan(s.value)


# --------------------------------------------------------------------------- PI
def test_pi_steps_by_hand() -> None:
    c = make()
    # Frame 0, density 0.5: e = 0.5. Bumpless start: I = 5 − 2·0.5 = 4; I' = 4 + 0.5·0.5 = 4.25;
    # u = 2·0.5 + 4.25 = 5.25.
    assert c.update(0, [0.5]).output == pytest.approx(5.25)
    assert c.integral == pytest.approx(4.25)
    # Frame 1, same: I' = 4.5, u = 5.5.
    assert c.update(1, [0.5]).output == pytest.approx(5.5)
    # Frame 2, on target: e = 0, u = I = 4.5.
    assert c.update(2, [1.0]).output == pytest.approx(4.5)


def test_integral_advances_once_per_measured_frame() -> None:
    c = make()
    c.update(0, [1.0])  # e = 0: I = 5
    # Three frames of stats in one tick, smoothing window 1 → e = 1 − 0.5 on the last one;
    # I' = 5 + 0.5·0.5·3 = 5.75, u = 2·0.5 + 5.75 = 6.75.
    step = c.update(1, [0.7, 0.6, 0.5])
    assert step.output == pytest.approx(6.75)
    assert step.density_per_um2 == pytest.approx(0.6)


def test_no_new_stats_holds_the_output_and_the_integral() -> None:
    c = make()
    c.update(0, [0.5])
    out, integral = c.output, c.integral
    for frame in range(1, 20):
        step = c.update(frame, [])
        assert step.output == out
    assert c.integral == integral
    # Frames without a measurement (NaN) are ignored too.
    assert c.update(20, [math.nan]).output == out


def test_rate_limit_per_frame_by_hand() -> None:
    c = make(max_rate_mw_per_frame=0.1)
    # Wants 5.25 (see test_pi_steps_by_hand) but may move 0.1 per frame; the error pushes into
    # the rate limit, so the integral stays at its bumpless value 4 (anti-windup applies to the
    # rate limit too).
    assert c.update(0, [0.5]).output == pytest.approx(5.1)
    assert c.update(1, [0.5]).output == pytest.approx(5.2)
    assert c.integral == pytest.approx(4.0)
    # Three frames since the last update: may move 0.3, up to 5.5; wants 2·0.5 + 4.25 = 5.25,
    # which is within reach, so it is applied and the integral steps.
    assert c.update(4, [0.5]).output == pytest.approx(5.25)
    assert c.integral == pytest.approx(4.25)


def test_rate_limit_bounds_every_frame_of_a_large_step() -> None:
    c = make(max_rate_mw_per_frame=0.5)
    c.set_target(10.0)
    outputs = [c.update(f, [0.0]).output for f in range(40)]
    steps = [b - a for a, b in zip([5.0, *outputs], outputs, strict=False)]
    assert max(abs(s) for s in steps) <= 0.5 + 1e-12
    assert outputs[-1] > 20.0


def test_anti_windup_at_saturation_by_hand() -> None:
    c = make(output=5.9, limits=(0.0, 6.0))
    # e = 1: bumpless I = 5.9 − 2 = 3.9; wants 2 + 4.4 = 6.4 > 6 → 6, and the error pushes further
    # into the limit, so the integral does not move (conditional integration).
    step = c.update(0, [0.0])
    assert step.output == 6.0
    assert c.integral == pytest.approx(3.9)
    assert c.saturation == "high"
    assert any(e.kind == "saturation" for e in step.events)
    for frame in range(1, 200):
        assert c.update(frame, [0.0]).output == 6.0
    assert c.integral == pytest.approx(3.9)  # no windup over 200 saturated frames
    # Too many emitters now (e = −0.5): the output leaves the limit at once:
    # I' = 3.9 − 0.25 = 3.65, u = −1 + 3.65 = 2.65. A wound-up integral (3.9 + 0.5·200 = 103.9)
    # would have kept the laser at 6 mW for ~200 more frames.
    step = c.update(200, [1.5])
    assert step.output == pytest.approx(2.65)
    assert not c.saturation
    assert any("left saturation" in e.message for e in step.events)


def test_anti_windup_at_the_lower_limit_and_min_power() -> None:
    c = make(output=3.0, min_power_mw=2.0)
    # Far too dense: wants 2·(1 − 5) + ... < 2 → held at min_power 2, integral frozen.
    for frame in range(50):
        assert c.update(frame, [5.0]).output == 2.0
    assert c.saturation == "low"
    frozen = c.integral
    c.update(50, [5.0])
    assert c.integral == frozen


def test_output_stays_within_limits_for_any_input() -> None:
    c = make(limits=(1.0, 20.0), max_rate_mw_per_frame=3.0)
    densities = [0.0, 50.0, -3.0, 1e9, math.nan, 0.2, 1.0, 1e-9, 7.0]
    for frame in range(300):
        if frame % 37 == 0:
            c.set_target(frame % 5)
        out = c.update(frame, [densities[frame % len(densities)]]).output
        assert 1.0 <= out <= 20.0


# --------------------------------------------------------------------------- modes
def test_off_mode_holds_manual_power_and_auto_starts_bumpless() -> None:
    c = make(mode="off")
    assert c.mode == "off"
    assert c.update(0, [0.2]).output == 5.0  # off: the law does not act
    assert c.set_manual(7.0) == 7.0
    assert c.update(1, [0.2]).output == 7.0
    c.set_mode("auto")
    # First auto step: I = 7 − kp·e, u = 7 + ki·e·1: only the integral step moves it.
    step = c.update(2, [0.2])
    assert step.output == pytest.approx(7.0 + 0.5 * 0.8)
    assert [e.message for e in step.events] == ["mode off -> auto"]


def test_manual_power_is_refused_in_auto_and_outside_the_limits() -> None:
    c = make()
    with pytest.raises(ValueError, match="set_mode off"):
        c.set_manual(3.0)
    c.set_mode("off")
    with pytest.raises(ValueError, match="outside"):
        c.set_manual(101.0)


@pytest.mark.parametrize("bad", ["manual", "AUTO", ""])
def test_unknown_mode_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown control mode"):
        make().set_mode(bad)


def test_bad_configuration_fails_fast() -> None:
    with pytest.raises(ValueError, match="min_power_mw"):
        make(limits=(0.0, 10.0), min_power_mw=20.0)
    with pytest.raises(ValueError, match="outside"):
        make(output=-1.0)


def test_hold_forces_the_output_and_restarts_smoothing() -> None:
    c = make(smoothing_frames=5)
    c.update(0, [0.5])
    c.hold(0.0)
    assert c.output == 0.0 and math.isnan(c.smoother.value)
    # Resumes bumpless from the held value, rate-limited like any change.
    assert c.update(1, [1.0]).output == pytest.approx(0.0)
