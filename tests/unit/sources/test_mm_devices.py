"""The simulated camera and 405 nm laser as Micro-Manager Python devices, in a real core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pymmcore_plus.experimental.unicore import UniMMCore

from live_decode.errors import ConfigError
from live_decode.sources.mm import MMSource
from live_decode.sources.mm_core import MMDeviceError, close_core, open_core
from live_decode.sources.mm_devices import FAST_MODE_FRAMES
from live_decode.testing.mm import REPO_CONFIGS, open_sim_core, sim_config

SIM_CFG = REPO_CONFIGS / "mm_sim.cfg"


@pytest.fixture
def core() -> Iterator[UniMMCore]:
    c = open_sim_core(sim_config(fov_px=(64, 64), exposure_ms=2.0), laser_mw=1.0)
    yield c
    close_core(c)
    c.unloadAllDevices()


# ----------------------------------------------------------------------------- config file
def _state(core: UniMMCore) -> dict[str, object]:
    devices = {
        d: (core.getDeviceLibrary(d), core.getDeviceName(d))
        for d in core.getLoadedDevices()
        if d != "Core"
    }
    return {
        "devices": devices,
        "camera": core.getCameraDevice(),
        "pixel_size_um": core.getPixelSizeUm(),
        "exposure_ms": core.getExposure(),
        "laser_mw": core.getProperty("Laser405", "Power"),
        "mode": core.getProperty("Camera", "Mode"),
        "laser_device": core.getProperty("Camera", "LaserDevice"),
        "startup": sorted(core.getConfigData("System", "Startup").dict().items()),
    }


def test_config_file_loads_and_round_trips(tmp_path: Path) -> None:
    first = open_core(SIM_CFG)
    try:
        state = _state(first)
        first.saveSystemConfiguration(str(tmp_path / "saved.cfg"))
    finally:
        close_core(first)
    assert state["devices"] == {
        "Camera": ("live_decode.sources.mm_devices", "SimulatedSMLMCamera"),
        "Laser405": ("live_decode.sources.mm_devices", "ActivationLaser"),
    }
    assert (state["camera"], state["pixel_size_um"], state["laser_mw"]) == ("Camera", 0.1, 5.0)
    again = open_core(tmp_path / "saved.cfg")
    try:
        assert _state(again) == state
        again.saveSystemConfiguration(str(tmp_path / "again.cfg"))
    finally:
        close_core(again)
    text = [(tmp_path / n).read_text().splitlines()[1:] for n in ("saved.cfg", "again.cfg")]
    assert text[0] == text[1]  # identical but for the time stamp line
    assert "#py pyDevice,Laser405,live_decode.sources.mm_devices,ActivationLaser" in text[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("#py pyDevice,Camera,live_decode.sources.no_such_module,Cam", "no_such_module"),
        ("#py pyDevice,Camera,live_decode.sources.mm_devices,NoSuchCamera", "NoSuchCamera"),
        ("Device,Camera,NoSuchAdapter,DCam", "NoSuchAdapter"),
        (
            "#py Property,Camera,SimulationConfig,/no/such/sim.yaml",
            r"failed to initialize: /no/such/sim\.yaml: config file not found",
        ),
    ],
)
def test_a_config_file_that_does_not_load(tmp_path: Path, line: str, message: str) -> None:
    text = SIM_CFG.read_text().splitlines()
    replaced = (
        "#py Property,Camera,SimulationConfig,"
        if "Property" in line
        else ("#py pyDevice,Camera,live_decode.sources.mm_devices,SimulatedSMLMCamera")
    )
    text[text.index(replaced)] = line
    (tmp_path / "bad.cfg").write_text("\n".join(text))
    with pytest.raises(
        MMDeviceError,
        match=rf"bad\.cfg: Micro-Manager could not load(.|\n)*"
        rf"{message}",
    ):
        open_core(tmp_path / "bad.cfg")


def test_a_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        open_core(tmp_path / "nope.cfg")


# ----------------------------------------------------------------------------- laser
def test_laser_power_is_bounded_and_announced(core: UniMMCore) -> None:
    assert core.hasPropertyLimits("Laser405", "Power")
    assert (
        core.getPropertyLowerLimit("Laser405", "Power"),
        core.getPropertyUpperLimit("Laser405", "Power"),
    ) == (0.0, 100.0)
    seen: list[object] = []
    core.events.devicePropertyChanged("Laser405", "Power").connect(seen.append)
    core.setProperty("Laser405", "Power", 7.5)
    assert seen == ["7.5"]
    for bad in (-1.0, 100.5, float("nan")):
        with pytest.raises(ValueError, match="Power"):
            core.setProperty("Laser405", "Power", bad)
    assert core.getProperty("Laser405", "Power") == 7.5 and seen == ["7.5"]
    assert core.isPropertyReadOnly("Laser405", "Wavelength-nm")


def _densities(source: MMSource, n: int) -> list[tuple[float, float]]:
    """(laser mW, true density per µm²) of the next ``n`` frames, from their metadata."""
    out = []
    for _ in range(n):
        assert source.read() is not None and source.last_frame is not None
        md = source.last_frame.metadata
        out.append((float(md["Laser-mW"]), float(md["GroundTruth-DensityPerUm2"])))
    return out


def test_setting_the_laser_through_the_core_changes_the_density(core: UniMMCore) -> None:
    """Up tenfold and back off, each visible in the ground truth within a few frames."""
    source = MMSource(core, owns_core=False)
    low = np.mean([d for _, d in _densities(source, 8)])
    core.setProperty("Laser405", "Power", 60.0)
    after_up = _densities(source, 6)
    lit = [d for mw, d in after_up if mw == 60.0]
    assert len(lit) >= 3, f"the camera took more than 3 frames to see the laser: {after_up}"
    assert np.mean(lit) > 5 * low
    core.setProperty("Laser405", "Power", 0.0)
    after_off = _densities(source, 10)
    dark = [d for mw, d in after_off if mw == 0.0]
    assert len(dark) >= 7
    assert np.mean(dark[-3:]) < 0.5 * np.mean(lit)  # on-times of ~2 frames die out
    source.close()


# ----------------------------------------------------------------------------- camera
def test_fast_mode_replays_a_bank_of_frames(core: UniMMCore) -> None:
    core.setProperty("Camera", "Mode", "Fast")
    source = MMSource(core, owns_core=False)
    frames = [f.pixels for f in (source.read() for _ in range(FAST_MODE_FRAMES + 1)) if f]
    np.testing.assert_array_equal(frames[0], frames[FAST_MODE_FRAMES])
    assert not np.array_equal(frames[0], frames[1])
    source.close()


def test_snap_and_properties(core: UniMMCore) -> None:
    core.snapImage()
    image = core.getImage()
    assert image.shape == (64, 64) and image.dtype == np.uint16
    assert core.getProperty("Camera", "Offset") == 100.0
    assert core.getAllowedPropertyValues("Camera", "Mode") == ("Simulate", "Fast")
    with pytest.raises(ValueError, match="exposure"):
        core.setExposure(-1.0)
