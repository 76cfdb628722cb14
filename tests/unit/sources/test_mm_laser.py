"""MMPropertyActuator: one contract, run against a Python device and a C++ adapter's property."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pymmcore_plus import CMMCorePlus

from live_decode.sources.mm_core import MMDeviceError, close_core
from live_decode.sources.mm_laser import MMPropertyActuator
from live_decode.testing.mm import (
    DEMOCAM_MISSING,
    REPO_CONFIGS,
    democam_available,
    open_sim_core,
    sim_config,
)


@dataclass(frozen=True)
class Case:
    device: str
    prop: str
    limits: tuple[float, float]
    inside: float


CASES = {
    "python_laser": Case("Laser405", "Power", (0.0, 100.0), 12.5),
    "cpp_democam": Case("Camera", "BeadDensity", (10.0, 500.0), 123.0),  # an Integer property
}


@pytest.fixture(params=sorted(CASES))
def rig(request: pytest.FixtureRequest) -> Iterator[tuple[CMMCorePlus, Case]]:
    if request.param == "python_laser":
        core: CMMCorePlus = open_sim_core(sim_config())
    else:
        if not democam_available():
            pytest.skip(DEMOCAM_MISSING)
        core = CMMCorePlus()
        core.loadSystemConfiguration(str(REPO_CONFIGS / "mm_democam.cfg"))
    yield core, CASES[request.param]
    close_core(core)
    core.unloadAllDevices()
    del core


class TestActuatorContract:
    def test_name_and_limits_from_the_core(self, rig: tuple[CMMCorePlus, Case]) -> None:
        core, case = rig
        actuator = MMPropertyActuator(core, case.device, case.prop)
        assert actuator.name == f"{case.device}.{case.prop}"
        assert actuator.limits == case.limits

    def test_set_returns_the_value_read_back(self, rig: tuple[CMMCorePlus, Case]) -> None:
        core, case = rig
        actuator = MMPropertyActuator(core, case.device, case.prop)
        assert actuator.set(case.inside) == case.inside
        assert actuator.get() == case.inside == float(core.getProperty(case.device, case.prop))
        lo, hi = case.limits
        assert actuator.set(lo) == lo and actuator.set(hi) == hi  # the limits are inclusive

    @pytest.mark.parametrize("where", ["below", "above", "nan", "inf"])
    def test_values_outside_the_limits_are_refused(
        self, rig: tuple[CMMCorePlus, Case], where: str
    ) -> None:
        core, case = rig
        actuator = MMPropertyActuator(core, case.device, case.prop)
        before = actuator.get()
        lo, hi = case.limits
        value = {"below": lo - 1, "above": hi + 1, "nan": float("nan"), "inf": float("inf")}[where]
        with pytest.raises(
            ValueError,
            match=rf"outside the limits \[{lo:g}, {hi:g}\] of "
            rf"{case.device}\.{case.prop}; nothing was sent",
        ):
            actuator.set(value)
        assert actuator.get() == before


@pytest.fixture
def sim_core() -> Iterator[CMMCorePlus]:
    core = open_sim_core(sim_config())
    yield core
    close_core(core)
    core.unloadAllDevices()


@pytest.mark.parametrize(
    ("device", "prop", "message"),
    [
        ("Laser488", "Power", r"no device 'Laser488' is loaded.*Camera, Laser405"),
        ("Laser405", "Intensity", r"no property 'Intensity'; its properties: .*Power"),
        ("Laser405", "Wavelength-nm", "read-only"),
        ("Camera", "Mode", "not a number"),
        ("Camera", "Exposure", "no limits"),
    ],
)
def test_bad_actuators_are_refused_at_construction(
    sim_core: CMMCorePlus, device: str, prop: str, message: str
) -> None:
    with pytest.raises(MMDeviceError, match=message):
        MMPropertyActuator(sim_core, device, prop)
