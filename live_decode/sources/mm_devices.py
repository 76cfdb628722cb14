"""The simulated microscope as Micro-Manager devices (pymmcore-plus Python devices).

Load them from a config file with ``#py`` lines (see ``configs/mm_sim.cfg``)::

    #py pyDevice,Camera,live_decode.sources.mm_devices,SimulatedSMLMCamera
    #py pyDevice,Laser405,live_decode.sources.mm_devices,ActivationLaser

or in Python with ``core.loadPyDevice("Camera", SimulatedSMLMCamera(cfg))``.

How the two devices meet: the laser announces every new power on the core's ``propertyChanged``
signal (pymmcore-plus 0.18 does not emit it for Python devices, so the laser does it itself), and
the camera listens for its laser's label there. Setting the laser through the core, as a lab's
own control code would, therefore changes the activation rate of the next frame, and nothing
else couples them (a real camera knows nothing of the laser either).

Runtime code never imports this module: it is the simulated instrument, a drop-in for hardware.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
from pymmcore_plus.experimental.unicore import CameraDevice, GenericDevice, pymm_property

import live_decode
from live_decode.config import Config, load_config
from live_decode.simulation.microscope import GroundTruth, SimulatedMicroscope

log = logging.getLogger("live_decode.sources.mm_devices")

MAX_LASER_POWER_MW = 100.0
"""Upper limit of :class:`ActivationLaser`'s ``Power`` property, mW."""

FAST_MODE_FRAMES = 8
"""Frames simulated once and then replayed in a loop in ``Fast`` mode."""

BUNDLED_DEMO = Path(live_decode.__file__).resolve().parent / "bundled" / "demo.yaml"


class _Connectable(Protocol):
    def connect(self, slot: Callable[..., Any]) -> Any: ...

    def disconnect(self, slot: Callable[..., Any]) -> Any: ...


def load_simulation_config(path: str) -> Config:
    """The simulation config a camera's ``SimulationConfig`` property names.

    ``""`` means the embedded demo config (the built-in defaults if that is not installed).
    A relative path is taken from the working directory.
    """
    if not path:
        return load_config(BUNDLED_DEMO) if BUNDLED_DEMO.is_file() else Config()
    return load_config(path)  # ConfigError names the file and the key


class ActivationLaser(GenericDevice):
    """A 405 nm activation laser: one ``Power`` property in mW, bounded to [0, 100].

    It starts switched off (0 mW). Every accepted value is announced on the core's
    ``propertyChanged`` signal; the core rejects values outside the limits before they get here.
    """

    def __init__(self) -> None:
        super().__init__()
        self._power_mw = 0.0

    @pymm_property(limits=(0.0, MAX_LASER_POWER_MW), name="Power")
    def power(self) -> float:
        """Laser power, mW."""
        return self._power_mw

    @power.setter  # type: ignore[no-redef]
    def power(self, value: float) -> None:
        self._power_mw = float(value)
        self.core.events.propertyChanged.emit(self.get_label(), "Power", str(self._power_mw))

    @pymm_property(name="Wavelength-nm")
    def wavelength_nm(self) -> float:
        """Emission wavelength, nm (read-only)."""
        return 405.0


class SimulatedSMLMCamera(CameraDevice):
    """The simulated SMLM microscope seen through a Micro-Manager camera: uint16 frames in ADU.

    Parameters
    ----------
    config
        The simulation. None: read the file named by the pre-init property ``SimulationConfig``
        when the device is initialized ("" = the embedded demo).

    Properties (Micro-Manager names)
    --------------------------------
    ``Exposure`` (ms): the frame period of sequence acquisitions (the photophysics keeps the
    exposure/interval ratio of the simulation config). ``Mode``: ``Simulate`` renders every frame
    (laser-dependent, with ground truth); ``Fast`` replays :data:`FAST_MODE_FRAMES` pre-rendered
    frames for throughput tests (the laser has no effect). ``Offset`` (baseline, ADU) and
    ``EMGain`` report the simulated camera's calibration. Pre-init: ``SimulationConfig`` (YAML
    path), ``LaserDevice`` (label of the laser whose ``Power`` drives activation).

    Each frame's metadata carries its ground truth: ``GroundTruth-Emitters``,
    ``GroundTruth-DensityPerUm2``, ``Laser-mW``; the last frame's emitter table is
    :attr:`last_truth`.
    """

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        self._config = config
        self._config_path = ""
        self._laser_label = "Laser405"
        self._mode = "Simulate"
        self._microscope: SimulatedMicroscope | None = None
        self._exposure_ms = config.microscope.frame_interval_ms if config else 20.0
        self._bank: list[tuple[npt.NDArray[np.uint16], dict[str, str]]] = []
        self._signal: _Connectable | None = None
        self._sim_lock = threading.Lock()  # the acquisition thread and property setters share it
        self.frames_produced = 0
        """Frames handed to the core since the device was loaded (sequences and snaps)."""
        self.last_truth: GroundTruth | None = None

    # ------------------------------------------------------------------ lifecycle
    def initialize(self) -> None:
        cfg = self._config
        if cfg is None:
            cfg = load_simulation_config(self._config_path)
        self._config = cfg
        self._microscope = SimulatedMicroscope(cfg)
        # The laser device starts off; so does the light the simulation sees, until the laser
        # announces a power on the core.
        self._microscope.laser_power_mw = 0.0
        signal = self.core.events.propertyChanged
        if not hasattr(signal, "connect"):  # a future pymmcore-plus may narrow the proxy
            raise RuntimeError(
                "this pymmcore-plus does not let a Python device listen to propertyChanged; "
                "use pymmcore-plus 0.18.x"
            )
        self._signal = cast(_Connectable, signal)
        self._signal.connect(self._on_property_changed)
        if self._mode == "Fast":
            self._fill_bank()

    def shutdown(self) -> None:
        if self._signal is not None:
            self._signal.disconnect(self._on_property_changed)
            self._signal = None
        self._microscope = None
        self._bank = []

    @property
    def microscope(self) -> SimulatedMicroscope:
        """The simulation behind the camera (after the device is initialized)."""
        if self._microscope is None:
            raise RuntimeError(
                f"camera {self.get_label()!r} is not initialized: call core.initializeDevice"
            )
        return self._microscope

    def _on_property_changed(self, device: str, prop: str, value: object) -> None:
        if device != self._laser_label or prop != "Power" or self._microscope is None:
            return
        max_mw = self._microscope.cfg.microscope.laser.max_power_mw
        power = float(str(value))
        if not 0.0 <= power <= max_mw:
            log.warning(
                "laser power %g mW is outside the simulation's [0, %g] mW: clamped", power, max_mw
            )
            power = min(max(power, 0.0), max_mw)
        self._microscope.laser_power_mw = power

    # ------------------------------------------------------------------ properties
    @pymm_property(is_pre_init=True, name="SimulationConfig")
    def simulation_config(self) -> str:
        """YAML file of the simulation; "" = the embedded demo."""
        return self._config_path

    @simulation_config.setter  # type: ignore[no-redef]
    def simulation_config(self, value: str) -> None:
        self._config_path = str(value)

    @pymm_property(is_pre_init=True, name="LaserDevice")
    def laser_device(self) -> str:
        """Label of the activation laser this camera's photophysics follows."""
        return self._laser_label

    @laser_device.setter  # type: ignore[no-redef]
    def laser_device(self, value: str) -> None:
        self._laser_label = str(value)

    @pymm_property(allowed_values=["Simulate", "Fast"], name="Mode")
    def mode(self) -> str:
        return self._mode

    @mode.setter  # type: ignore[no-redef]
    def mode(self, value: str) -> None:
        self._mode = str(value)
        if self._mode == "Fast" and self._microscope is not None:
            self._fill_bank()

    def _fill_bank(self) -> None:
        if not self._bank:
            self._bank = [self._render() for _ in range(FAST_MODE_FRAMES)]

    def get_exposure(self) -> float:
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        value = float(exposure)
        if not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"exposure {exposure!r} ms must be a finite number >= 0")
        self._exposure_ms = value
        # Python cameras do not emit exposureChanged in pymmcore-plus 0.18; listeners need it.
        self.core.events.exposureChanged.emit(self.get_label(), value)

    def get_offset(self) -> float:
        return self.microscope.cfg.camera.baseline_adu

    def get_em_gain(self) -> float:
        return float(self.microscope.camera_metadata()["em_gain"])

    def shape(self) -> tuple[int, int]:
        return self.microscope.fov_px

    def dtype(self) -> np.dtype[np.uint16]:
        return np.dtype(np.uint16)

    # ------------------------------------------------------------------ acquisition
    def _render(self) -> tuple[npt.NDArray[np.uint16], dict[str, str]]:
        with self._sim_lock:
            frame = self.microscope.next_frame()
        self.last_truth = frame.truth
        meta = {
            "GroundTruth-Emitters": str(len(frame.truth)),
            "GroundTruth-DensityPerUm2": f"{frame.density_per_um2:.6g}",
            "Laser-mW": f"{frame.laser_mw:.6g}",
            "Exposure-ms": f"{self._exposure_ms:.6g}",
        }
        return frame.adu, meta

    def start_sequence(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], npt.DTypeLike], npt.NDArray[Any]],
    ) -> Iterator[Mapping[str, str]]:
        """Frames at one per ``Exposure`` ms (as fast as they render if that is slower)."""
        shape, dtype = self.shape(), self.dtype()
        due = time.perf_counter()
        i = 0
        while n is None or i < n:
            buf = get_buffer(shape, dtype)  # a slot of the core's circular buffer
            if self._mode == "Fast" and self._bank:
                pixels, meta = self._bank[self.frames_produced % len(self._bank)]
            else:
                pixels, meta = self._render()
            np.copyto(buf, pixels)
            due += self._exposure_ms / 1000.0
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:  # running late: keep the period from now on, do not burst to catch up
                due = time.perf_counter()
            self.frames_produced += 1
            i += 1
            yield meta
