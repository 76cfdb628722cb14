"""One contract for every Actuator: the simulated laser and the Micro-Manager property actuator.

The Micro-Manager cases run when ``live_decode.sources.mm_laser`` is importable, on real
pymmcore-plus cores: the simulated ``Laser405`` Python device (``Power``) of
:func:`~live_decode.testing.mm.open_sim_core`, and a bounded float property of the C++
DemoCamera (``mm-test-adapters``) when it is installed. Cores are closed with ``close_core``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from live_decode.config import config_from_dict
from live_decode.control.actuators import Actuator
from live_decode.sources.simulated import SimulatedLaserActuator, SimulatedSource

ActuatorFactory = Callable[[], Actuator]

#: A writable float property with limits in the Micro-Manager demo configuration.
DEMO_DEVICE, DEMO_PROPERTY = "Camera", "TestProperty2"


def _simulated() -> Iterator[ActuatorFactory]:
    cfg = config_from_dict({"microscope": {"fov_px": [16, 16], "laser": {"max_power_mw": 50.0}}})
    source = SimulatedSource(cfg)
    yield lambda: SimulatedLaserActuator(source)
    source.close()


def _micro_manager(which: str) -> Iterator[ActuatorFactory]:
    mm_laser: Any = pytest.importorskip("live_decode.sources.mm_laser")
    mm_core: Any = pytest.importorskip("live_decode.sources.mm_core")
    mm_testing: Any = pytest.importorskip("live_decode.testing.mm")
    if which == "mm-laser":
        core = mm_testing.open_sim_core(mm_testing.sim_config(fov_px=(16, 16)))
        device, prop = "Laser405", "Power"
    else:
        if not mm_testing.democam_available():
            pytest.skip(mm_testing.DEMOCAM_MISSING)
        from pymmcore_plus import CMMCorePlus

        core = CMMCorePlus()
        core.loadSystemConfiguration()  # the demo configuration
        device, prop = DEMO_DEVICE, DEMO_PROPERTY
    cores = [core]
    del core  # only ``cores`` holds it, so the teardown can drop the last reference
    try:
        yield lambda: mm_laser.MMPropertyActuator(cores[0], device, prop)
    finally:
        mm_core.close_core(cores[0])
        cores.clear()  # a core alive at exit can abort the interpreter


@pytest.fixture(params=["simulated", "mm-laser", "mm-democam"])
def make_actuator(request: pytest.FixtureRequest) -> Iterator[ActuatorFactory]:
    """A factory of the actuator under test (fresh device state per test)."""
    if request.param == "simulated":
        yield from _simulated()
    else:
        yield from _micro_manager(request.param)


def _close(a: float, b: float, span: float) -> bool:
    # Device properties may be rounded (Micro-Manager stores 4 decimals).
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-4 * span)


class TestActuatorContract:
    def test_is_an_actuator_with_a_name(self, make_actuator: ActuatorFactory) -> None:
        act = make_actuator()
        assert isinstance(act, Actuator)
        assert isinstance(act.name, str) and act.name

    def test_limits_are_ordered_floats_and_hold_the_present_value(
        self, make_actuator: ActuatorFactory
    ) -> None:
        act = make_actuator()
        lo, hi = act.limits
        assert isinstance(lo, float) and isinstance(hi, float)
        assert math.isfinite(lo) and math.isfinite(hi) and lo < hi
        assert lo <= act.get() <= hi

    @pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
    def test_set_within_limits_applies_and_returns_the_value(
        self, make_actuator: ActuatorFactory, fraction: float
    ) -> None:
        act = make_actuator()
        lo, hi = act.limits
        value = lo + fraction * (hi - lo)
        applied = act.set(value)
        assert isinstance(applied, float)
        assert _close(applied, value, hi - lo)
        assert _close(act.get(), applied, hi - lo)

    @pytest.mark.parametrize("where", ["above", "below", "nan", "inf"])
    def test_set_outside_limits_raises_and_changes_nothing(
        self, make_actuator: ActuatorFactory, where: str
    ) -> None:
        act = make_actuator()
        lo, hi = act.limits
        start = act.set(lo + 0.5 * (hi - lo))
        bad = {
            "above": hi + 0.01 * (hi - lo),
            "below": lo - 0.01 * (hi - lo),
            "nan": math.nan,
            "inf": math.inf,
        }[where]
        with pytest.raises(ValueError, match="limit"):
            act.set(bad)
        assert _close(act.get(), start, hi - lo)
