"""MMSource: lost frames, metadata, start/stop, teardown, bad input (real cores, no mocks)."""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import time
import weakref
from collections.abc import Iterator

import pytest
from pymmcore_plus import CMMCorePlus
from pymmcore_plus.experimental.unicore import UniMMCore

from live_decode.config import Config, load_config
from live_decode.errors import ConfigError
from live_decode.sources.base import HasActivationLaser, SourceGap
from live_decode.sources.mm import MMSource
from live_decode.sources.mm_core import MMDeviceError, close_core
from live_decode.sources.runner import laser_handler
from live_decode.testing.mm import (
    DEMOCAM_MISSING,
    REPO_CONFIGS,
    BlankCamera,
    democam_available,
    open_blank_core,
    open_sim_core,
    sim_config,
)
from live_decode.transport.control import LaserReply, SetLaser, Status, StatusReply

needs_democam = pytest.mark.skipif(not democam_available(), reason=DEMOCAM_MISSING)


@pytest.fixture
def sim_core() -> Iterator[UniMMCore]:
    core = open_sim_core(sim_config())
    yield core
    close_core(core)
    core.unloadAllDevices()


@pytest.fixture
def democam_core() -> Iterator[CMMCorePlus]:
    if not democam_available():
        pytest.skip(DEMOCAM_MISSING)
    core = CMMCorePlus()
    core.loadSystemConfiguration(str(REPO_CONFIGS / "mm_democam.cfg"))
    yield core
    close_core(core)
    core.unloadAllDevices()


def _read_all(source: MMSource, n: int, pause_s: float = 0.0) -> list[int]:
    indices = []
    for _ in range(n):
        frame = source.read()
        assert frame is not None
        indices.append(frame.index)
        time.sleep(pause_s)
    return indices


def _drain(source: MMSource) -> list[int]:
    source.stop()
    return [f.index for f in iter(source.read, None)]


def _check_gaps(indices: list[int], source: MMSource, gaps: list[SourceGap]) -> None:
    """Index jumps = reported gaps = frames lost."""
    jumps = [SourceGap(a + 1, b - a - 1) for a, b in itertools.pairwise(indices) if b - a > 1]
    assert jumps == gaps
    assert sum(g.count for g in gaps) == source.frames_lost
    assert source.gaps_detected == len(gaps)


# ----------------------------------------------------------------------------- lost frames
def test_overflow_gaps_equal_frames_lost() -> None:
    """A tiny buffer (8 frames) and a consumer 20x slower than the 1 kHz camera."""
    camera = BlankCamera(shape=(256, 256), period_s=0.001)  # 128 KiB frames
    source = MMSource(open_blank_core(camera), buffer_mb=1)
    try:
        indices = _read_all(source, 25, pause_s=0.02)
        indices += _drain(source)
        gaps = source.take_gaps()
        assert source.frames_lost > 0 and gaps
        _check_gaps(indices, source, gaps)
        # every frame the camera produced was either delivered or counted as lost
        assert len(indices) + source.frames_lost == camera.frames_produced
        assert indices[0] == 0 and indices[-1] == camera.frames_produced - 1
        assert source.take_gaps() == []  # taken once
    finally:
        source.close()


@needs_democam
def test_overflow_with_the_cpp_circular_buffer(democam_core: CMMCorePlus) -> None:
    """MMCore clears its whole buffer on overflow; the image numbers still show the loss."""
    source = MMSource(democam_core, buffer_mb=1, exposure_ms=1.0, owns_core=False)
    indices = _read_all(source, 12, pause_s=0.03)
    indices += _drain(source)
    gaps = source.take_gaps()
    assert source.frames_lost > 0
    _check_gaps(indices, source, gaps)
    last = source.last_frame
    assert last is not None
    assert len(indices) + source.frames_lost == last.image_number + 1
    source.close()


# ----------------------------------------------------------------------------- metadata
def test_metadata_from_the_camera_the_core_and_the_config(sim_core: UniMMCore) -> None:
    source = MMSource(
        sim_core,
        defaults={"qe": 0.8, "e_per_adu": 40.0},
        overrides={"e_per_adu": 45.0},
        owns_core=False,
    )
    cam = source.camera
    assert cam.pixel_size_nm == pytest.approx(100.0)  # the core's pixel-size preset
    assert cam.baseline_adu == 100.0 and cam.em_gain == 300.0  # Offset, EMGain properties
    assert cam.qe == 0.8 and cam.e_per_adu == 45.0  # default fills, override wins
    assert cam.extra["camera"] == "Camera" and cam.extra["binning"] == "1"
    frames = [source.read() for _ in range(3)]
    last = source.last_frame
    assert last is not None and frames[-1] is not None
    assert (last.index, last.image_number) == (frames[-1].index, 2)
    assert last.exposure_ms == 2.0 and last.binning == "1" and last.elapsed_ms > 0
    assert float(last.metadata["GroundTruth-DensityPerUm2"]) >= 0
    sim_core.setExposure(3.0)  # the camera announces it; the next read picks it up
    assert source.camera.exposure_ms == 3.0 and source.frame_interval_ms == 3.0
    source.close()


@needs_democam
def test_binning_changes_pixel_size_shape_and_metadata(democam_core: CMMCorePlus) -> None:
    source = MMSource(democam_core, owns_core=False)
    assert source.camera.pixel_size_nm == pytest.approx(100.0) and source.shape_px == (512, 512)
    assert source.camera.extra["mm_gain"] == "0"  # raw Gain: a setting, not e/ADU
    democam_core.setProperty("Camera", "Binning", "2")
    assert source.camera.pixel_size_nm == pytest.approx(200.0)
    frame = source.read()
    assert frame is not None and frame.pixels.shape == (256, 256) == source.shape_px
    assert source.camera.extra["binning"] == "2"
    source.close()


def test_stop_drains_then_ends_and_restart_continues_the_indices(sim_core: UniMMCore) -> None:
    source = MMSource(sim_core, owns_core=False)
    first = _read_all(source, 3) + _drain(source)
    assert source.read() is None and not source.running
    source.start()
    second = _read_all(source, 3)
    assert first == list(range(len(first)))
    assert second == list(range(len(first), len(first) + 3))
    assert source.frames_lost == 0 and source.frames_read == len(first) + 3
    source.close()


# ----------------------------------------------------------------------------- teardown
def test_close_unloads_an_owned_core_and_is_idempotent(sim_core: UniMMCore) -> None:
    source = MMSource(sim_core)
    source.read()
    source.close()
    source.close()
    assert tuple(sim_core.getLoadedDevices()) == ("Core",)
    assert source.read() is None
    with pytest.raises(MMDeviceError, match="closed"):
        source.start()


def test_close_leaves_a_borrowed_core_loaded(sim_core: UniMMCore) -> None:
    source = MMSource(sim_core, owns_core=False)
    source.read()
    source.close()
    assert not sim_core.isSequenceRunning()
    assert "Camera" in sim_core.getLoadedDevices()


def test_interpreter_exits_cleanly_after_a_run() -> None:
    """pymmcore can abort (SIGABRT) a finalizing interpreter while a core is alive."""
    config = "mm_democam.yaml" if democam_available() else "mm_sim.yaml"  # (no torch import)
    script = (
        "import weakref\n"
        "from live_decode.config import load_config\n"
        "from live_decode.sources.mm import MMSource\n"
        f"src = MMSource.from_config(load_config({str(REPO_CONFIGS / config)!r}))\n"
        "core = weakref.ref(src.core)\n"
        "assert [src.read().index for _ in range(3)] == [0, 1, 2]\n"
        "src.close()\n"
        "assert core() is None, 'the core outlived close()'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()[-2000:]


def test_close_frees_a_core_loaded_with_python_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading '#py' devices leaves the core in a reference cycle; close() must still free it."""
    # pytest keeps log records, and pymmcore-plus logs the core object: keep those out
    monkeypatch.setattr(logging.getLogger("pymmcore-plus"), "propagate", False)
    source = MMSource.from_config(load_config(REPO_CONFIGS / "mm_sim.yaml"))
    core = weakref.ref(source.core)
    assert source.read() is not None
    source.close()
    assert core() is None, "the core outlived close(): it could abort the interpreter at exit"


# ----------------------------------------------------------------------------- laser control
def test_laser_through_the_control_handler(sim_core: UniMMCore) -> None:
    from live_decode.sources.mm_laser import MMPropertyActuator

    source = MMSource(
        sim_core, laser=MMPropertyActuator(sim_core, "Laser405", "Power"), owns_core=False
    )
    handle = laser_handler(source)
    assert handle(SetLaser(12.5)) == LaserReply(12.5)
    assert handle(Status()) == StatusReply(laser_mw=12.5)
    assert sim_core.getProperty("Laser405", "Power") == 12.5
    assert isinstance(source, HasActivationLaser) and source.activation_laser is not None
    assert source.activation_laser.limits == (0.0, 100.0)
    with pytest.raises(ValueError, match="outside the limits"):
        handle(SetLaser(250.0))
    source.close()


def test_no_laser_is_a_clear_answer(sim_core: UniMMCore) -> None:
    source = MMSource(sim_core, owns_core=False)
    assert source.activation_laser is None
    with pytest.raises(ValueError, match="no activation laser"):
        laser_handler(source)(SetLaser(1.0))
    assert laser_handler(source)(Status()) == StatusReply(laser_mw=None)  # null on the wire
    source.close()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("camera", "message"),
    [
        ("NoSuchCamera", "no device 'NoSuchCamera' is loaded.*Camera, Laser405"),
        ("Laser405", "not a camera"),
    ],
)
def test_bad_camera_label(sim_core: UniMMCore, camera: str, message: str) -> None:
    with pytest.raises(MMDeviceError, match=message):
        MMSource(sim_core, camera=camera, owns_core=False)


def test_a_core_without_camera() -> None:
    core = UniMMCore()
    try:
        with pytest.raises(MMDeviceError, match="no camera"):
            MMSource(core, owns_core=False)
    finally:
        core.unloadAllDevices()


def test_a_buffer_too_small_for_two_frames() -> None:
    core = open_blank_core(BlankCamera(shape=(1024, 1024)))  # 2 MiB frames
    try:
        with pytest.raises(MMDeviceError, match=r"raise source\.buffer_mb"):
            MMSource(core, buffer_mb=2, owns_core=False)
    finally:
        close_core(core)


def test_unknown_calibration_field(sim_core: UniMMCore) -> None:
    with pytest.raises(ValueError, match="unknown camera field"):
        MMSource(sim_core, overrides={"gain": 2.0}, owns_core=False)


def test_from_config_needs_an_mm_source() -> None:
    with pytest.raises(ConfigError, match=r"source\.kind must be 'mm'"):
        MMSource.from_config(Config())


def test_from_config_with_a_missing_laser_property_loads_nothing() -> None:
    cfg = load_config(REPO_CONFIGS / "mm_sim.yaml")
    cfg = cfg.model_copy(
        update={"source": cfg.source.model_copy(update={"laser_property": "Intensity"})}
    )
    with pytest.raises(MMDeviceError, match=r"no property 'Intensity'.*Power"):
        MMSource.from_config(cfg)


def test_a_camera_that_delivers_nothing_times_out() -> None:
    camera = BlankCamera(stalled=True)
    source = MMSource(open_blank_core(camera), frame_timeout_s=0.2)
    try:
        with pytest.raises(MMDeviceError, match=r"no frame from camera 'Camera' in 0\.2 s"):
            source.read()
    finally:
        camera.release.set()
        source.close()
