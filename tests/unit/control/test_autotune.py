"""Step-test tuning on a simulated first-order-plus-dead-time plant."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import pytest

from live_decode.config import ControlConfig
from live_decode.control.autotune import (
    FopdtModel,
    StepTest,
    fit_fopdt,
    simc_gains,
    simulate_fopdt,
)
from live_decode.control.controller import DensityController


class FopdtPlant:
    """density = offset + K · first-order(T) response to the power applied ``delay`` frames ago."""

    def __init__(
        self, gain: float, tau: float, delay: int, noise: float = 0.0, offset: float = 0.05
    ) -> None:
        self.gain, self.a, self.offset, self.noise = gain, math.exp(-1.0 / tau), offset, noise
        self.inputs: deque[float] = deque([0.0] * (delay + 1), maxlen=delay + 1)
        self.x: float | None = None
        self.rng = np.random.default_rng(7)

    def frame(self, power: float) -> float:
        """Apply ``power`` after this frame; the density of the next frame."""
        self.inputs.append(power)
        u = self.inputs[0]
        self.x = u if self.x is None else self.a * self.x + (1 - self.a) * u
        return self.offset + self.gain * self.x + self.noise * float(self.rng.normal())


def settle(plant: FopdtPlant, power: float) -> float:
    y = 0.0
    for _ in range(200):
        y = plant.frame(power)
    return y


def controller(output: float, **cfg: Any) -> DensityController:
    base: dict[str, Any] = {
        "mode": "off",
        "smoothing_frames": 1,
        "autotune_step_mw": 5.0,
        "autotune_baseline_frames": 40,
        "autotune_response_frames": 120,
        "max_rate_mw_per_frame": 100.0,
    }
    return DensityController(ControlConfig(**(base | cfg)), (0.0, 100.0), output)


def run_autotune(c: DensityController, plant: FopdtPlant) -> list[str]:
    y = settle(plant, c.output)
    c.start_autotune()
    messages = []
    for frame in range(1000):
        step = c.update(frame, [y])
        messages += [e.message for e in step.events]
        y = plant.frame(step.output)
        if c.mode != "autotune":
            return messages
    raise AssertionError("the step test never finished")


# --------------------------------------------------------------------------- the fit
@pytest.mark.parametrize(("tau", "delay"), [(1.0, 0), (4.0, 3), (10.0, 6), (0.5, 8)])
def test_fit_recovers_a_noise_free_plant(tau: float, delay: int) -> None:
    u = np.r_[np.full(20, 10.0), np.full(100, 15.0)]
    y = simulate_fopdt(u, 10.0, 0.1, tau, delay, 1.0)
    taus = np.array([0.5, 1.0, 2.0, 4.0, 10.0, 20.0])
    model = fit_fopdt(u, y, 10.0, time_constants=taus)
    assert model.gain_per_mw == pytest.approx(0.1, rel=1e-6)
    assert model.time_constant_frames == tau
    assert model.dead_time_frames == delay + 1
    assert model.baseline_per_um2 == pytest.approx(1.0)


def test_fit_handles_a_ramped_step_and_missing_samples() -> None:
    u = np.r_[np.full(20, 10.0), np.linspace(11, 15, 5), np.full(95, 15.0)]  # rate-limited step
    y = simulate_fopdt(u, 10.0, 0.2, 3.0, 2, 0.5)
    y[::3] = np.nan  # frames whose stats never came
    model = fit_fopdt(u, y, 10.0, time_constants=np.array([1.0, 3.0, 9.0]))
    assert model.gain_per_mw == pytest.approx(0.2, rel=1e-6)
    assert (model.time_constant_frames, model.dead_time_frames) == (3.0, 3.0)


def test_fit_refuses_a_record_without_a_step() -> None:
    with pytest.raises(ValueError, match="never changed"):
        fit_fopdt(np.full(50, 3.0), np.ones(50), 3.0)


def test_simc_gains_by_hand() -> None:
    # K = 0.1, T = 4, θ = 2, τc = θ: kp = 4 / (0.1 · 4) = 10, τI = min(4, 16) = 4, ki = 2.5.
    model = FopdtModel(0.1, 4.0, 2.0, 0.0, 0.0)
    assert simc_gains(model) == pytest.approx((10.0, 2.5))
    # τc = 2θ: kp = 4 / (0.1 · 6) = 6.67, ki = kp / 4.
    kp, ki = simc_gains(model, tau_c_frames=4.0)
    assert (kp, ki) == pytest.approx((4 / 0.6, 4 / 0.6 / 4))
    with pytest.raises(ValueError, match="gain"):
        simc_gains(FopdtModel(-0.1, 4.0, 2.0, 0.0, 0.0))


def test_step_goes_down_when_there_is_no_room_up() -> None:
    test = StepTest(98.0, 5.0, 10, 30, (0.0, 100.0))
    assert test.u1 == 93.0
    assert [test.phase, test.command()] == ["baseline", 98.0]
    for _ in range(10):
        test.record(98.0, 1.0)
    assert [test.phase, test.command()] == ["response", 93.0]


# --------------------------------------------------------------------------- the controller
def test_autotune_identifies_the_plant_and_sets_simc_gains() -> None:
    plant = FopdtPlant(gain=0.1, tau=4.0, delay=3, noise=0.01)
    c = controller(10.0, autotune_tau_c_dead_times=1.0)
    messages = run_autotune(c, plant)
    model = c.model
    assert model is not None
    assert model.gain_per_mw == pytest.approx(0.1, rel=0.1)
    # Dead time and lag trade off against each other in noise; their sum is well determined.
    assert model.dead_time_frames + model.time_constant_frames == pytest.approx(4 + 4, abs=1.5)
    assert (c.kp, c.ki) == pytest.approx(simc_gains(model))
    assert c.mode == "off" and c.output == 10.0  # back to where it was started
    assert messages[0].startswith("mode off -> autotune")
    assert messages[-1] == "mode autotune -> off"
    assert any(m.startswith("autotune: K=") for m in messages)


def test_tuned_gains_close_the_loop_without_much_overshoot() -> None:
    plant = FopdtPlant(gain=0.1, tau=4.0, delay=3, noise=0.0)
    c = controller(10.0)
    run_autotune(c, plant)
    c.set_mode("auto")
    y = settle(plant, c.output)
    densities = []
    for frame in range(400):
        if frame == 100:
            c.set_target(2.0)
        step = c.update(frame, [y])
        y = plant.frame(step.output)
        densities.append(y)
    before, after = np.array(densities[80:100]), np.array(densities[100:])
    assert before == pytest.approx(1.0, abs=0.01)
    assert (after.max() - 2.0) / 1.0 <= 0.2  # overshoot of the step
    inside = np.abs(after - 2.0) <= 0.1
    settled = int(np.nonzero(~inside)[0][-1]) + 1
    assert settled < 60
    assert after[-50:] == pytest.approx(2.0, abs=0.01)


def test_autotune_from_auto_returns_to_auto() -> None:
    plant = FopdtPlant(gain=0.1, tau=2.0, delay=1)
    c = controller(10.0, mode="auto")
    messages = run_autotune(c, plant)
    assert c.mode == "auto"
    assert messages[-1] == "mode autotune -> auto"


def test_autotune_fails_cleanly_when_the_light_does_nothing() -> None:
    plant = FopdtPlant(gain=0.0, tau=2.0, delay=1, noise=0.05)
    c = controller(10.0, kp=1.5, ki=0.25)
    messages = run_autotune(c, plant)
    assert any("autotune failed, gains unchanged" in m for m in messages)
    assert (c.kp, c.ki, c.mode, c.output) == (1.5, 0.25, "off", 10.0)
    assert c.model is None


def test_a_second_autotune_while_one_runs_is_refused() -> None:
    c = controller(10.0)
    c.start_autotune()
    with pytest.raises(ValueError, match="already running"):
        c.set_mode("autotune")
    c.set_mode("off")  # abandons it
    assert c.mode == "off"
