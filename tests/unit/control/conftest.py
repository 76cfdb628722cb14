"""Fakes for the control tests: a clock the test advances and an actuator that records."""

from __future__ import annotations

import math

import pytest

from live_decode.control.actuators import check_in_limits


class FakeClock:
    """Monotonic seconds that move only when the test says so (no sleeps in the tests)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingActuator:
    """An :class:`~live_decode.control.actuators.Actuator` that keeps every value it was set to."""

    name = "recording"

    def __init__(self, value: float = 5.0, limits: tuple[float, float] = (0.0, 100.0)) -> None:
        self._limits = limits
        self.value = value
        self.history: list[float] = []
        self.fail = False

    @property
    def limits(self) -> tuple[float, float]:
        return self._limits

    def get(self) -> float:
        return self.value

    def set(self, value: float) -> float:
        if self.fail:
            raise OSError("laser controller not responding")
        v = check_in_limits(self.name, value, self._limits)
        assert math.isfinite(v)
        self.value = v
        self.history.append(v)
        return v


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def actuator() -> RecordingActuator:
    return RecordingActuator()
