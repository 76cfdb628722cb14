"""Micro-Manager cores for tests and benchmarks: the simulated devices, the DemoCamera.

Not used by runtime code. Every core made here must be closed with
:func:`live_decode.sources.mm_core.close_core` (or by an :class:`MMSource` that owns it).
"""

from __future__ import annotations

import importlib.util
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from pymmcore_plus.experimental.unicore import CameraDevice

from live_decode.config import Config

if TYPE_CHECKING:
    from pymmcore_plus.experimental.unicore import UniMMCore

    from live_decode.sources.mm_devices import SimulatedSMLMCamera

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
"""The repository's ``configs/`` folder (present in a source checkout)."""


def democam_available() -> bool:
    """True if the DemoCamera adapter (PyPI ``mm-test-adapters``) is installed."""
    return importlib.util.find_spec("mm_test_adapters") is not None


DEMOCAM_MISSING = (
    "the Micro-Manager DemoCamera is not installed: pip install 'mm-test-adapters>=75,<76' "
    "(its major version must equal pymmcore's device interface version, 75)"
)


def sim_config(
    fov_px: tuple[int, int] = (32, 32),
    exposure_ms: float = 2.0,
    seed: int = 0,
    pool_per_um2: float = 600.0,
) -> Config:
    """The demo physics (uniform emitters) on a small, fast frame; ``exposure_ms`` = interval.

    A large frame with a small ``pool_per_um2`` starts fast (the pool's warm-up scales with it).
    """
    base = Config()
    mic = base.microscope.model_copy(
        update={
            "fov_px": fov_px,
            "exposure_ms": exposure_ms,
            "frame_interval_ms": exposure_ms,
            "seed": seed,
            "pool_per_um2": 600.0,
        }
    )
    photo = base.photophysics.model_copy(update={"activation_per_frame_per_mw": 1.1e-4})
    return base.model_copy(update={"microscope": mic, "photophysics": photo})


def open_sim_core(
    cfg: Config,
    *,
    camera: SimulatedSMLMCamera | None = None,
    mode: str = "Simulate",
    laser_mw: float = 5.0,
    pixel_size_um: float = 0.1,
) -> UniMMCore:
    """A UniMMCore with ``Camera`` (:class:`SimulatedSMLMCamera` of ``cfg``) and ``Laser405``.

    Pass ``camera`` to keep a handle on the device (e.g. its ``frames_produced``).

    The camera is current, its exposure is ``cfg.microscope.exposure_ms``, the laser is at
    ``laser_mw``, and a pixel-size preset gives ``pixel_size_um``.
    """
    from pymmcore_plus.experimental.unicore import UniMMCore

    from live_decode.sources.mm_devices import ActivationLaser, SimulatedSMLMCamera

    core = UniMMCore()
    core.loadPyDevice("Camera", camera if camera is not None else SimulatedSMLMCamera(cfg))
    core.loadPyDevice("Laser405", ActivationLaser())
    core.initializeAllDevices()
    core.setCameraDevice("Camera")
    core.setExposure(cfg.microscope.exposure_ms)
    core.setProperty("Camera", "Mode", mode)
    core.setProperty("Laser405", "Power", laser_mw)
    core.definePixelSizeConfig("Res", "Core", "AutoShutter", "1")
    core.setPixelSizeUm("Res", pixel_size_um)
    # The cached pixel size (what an MDA's writers read) stays 0 until the cache is refreshed.
    core.updateSystemStateCache()
    return core


class BlankCamera(CameraDevice):
    """A minimal Python camera: zero uint16 frames of ``shape``, one per ``period_s``.

    ``frames_produced`` counts the frames handed to the core. With ``stalled`` it waits for a
    trigger (:attr:`release`) before each frame, as a camera waiting for an external trigger.
    """

    def __init__(
        self, shape: tuple[int, int] = (8, 8), period_s: float = 0.001, stalled: bool = False
    ) -> None:
        super().__init__()
        self._shape = shape
        self.period_s = period_s
        self.frames_produced = 0
        self.release = threading.Event()
        if not stalled:
            self.release.set()

    def get_exposure(self) -> float:
        return self.period_s * 1000.0

    def set_exposure(self, exposure: float) -> None:
        self.period_s = float(exposure) / 1000.0

    def shape(self) -> tuple[int, int]:
        return self._shape

    def dtype(self) -> np.dtype[np.uint16]:
        return np.dtype(np.uint16)

    def start_sequence(
        self, n: int | None, get_buffer: Callable[[Sequence[int], npt.DTypeLike], npt.NDArray[Any]]
    ) -> Iterator[Mapping[str, str]]:
        for _ in itertools.count() if n is None else range(n):
            get_buffer(self._shape, np.uint16)[:] = 0
            self.release.wait(5.0)
            time.sleep(self.period_s)
            self.frames_produced += 1
            yield {}


def open_blank_core(camera: BlankCamera, pixel_size_um: float = 0.1) -> UniMMCore:
    """A UniMMCore whose current camera ``Camera`` is ``camera``, with a pixel-size preset."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    core = UniMMCore()
    core.loadPyDevice("Camera", camera)
    core.initializeAllDevices()
    core.setCameraDevice("Camera")
    core.definePixelSizeConfig("Res", "Core", "AutoShutter", "1")
    core.setPixelSizeUm("Res", pixel_size_um)
    # The cached pixel size (what an MDA's writers read) stays 0 until the cache is refreshed.
    core.updateSystemStateCache()
    return core
