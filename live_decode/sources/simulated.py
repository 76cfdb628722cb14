"""The simulated microscope as a live frame source, with its 405 nm laser settable."""

from __future__ import annotations

from live_decode.config import Config
from live_decode.messages import CameraMeta
from live_decode.simulation.microscope import SimulatedFrame, SimulatedMicroscope
from live_decode.sources.base import Actuator, HasActivationLaser, SourceFrame, check_in_limits


def camera_meta_from_dict(meta: dict[str, float | str]) -> CameraMeta:
    """A :class:`CameraMeta` from a driver's metadata dict (numeric keys with units)."""

    def num(key: str, default: float = 0.0) -> float:
        value = meta.get(key, default)
        return float(value) if isinstance(value, int | float) else default

    return CameraMeta(
        pixel_size_nm=num("pixel_size_nm"),
        baseline_adu=num("baseline_adu"),
        e_per_adu=num("e_per_adu", 1.0),
        em_gain=num("em_gain", 1.0),
        qe=num("qe", 1.0),
        exposure_ms=num("exposure_ms"),
        spurious_charge_e=num("spurious_charge_e"),
        read_noise_e=num("read_noise_e"),
        extra={k: v for k, v in meta.items() if isinstance(v, str)},
    )


class SimulatedSource:
    """Frames from :class:`SimulatedMicroscope`; endless unless ``max_frames`` is given.

    The last frame's ground truth is kept in :attr:`last` for tests and demos.
    """

    def __init__(self, cfg: Config, max_frames: int | None = None, device: str = "cpu") -> None:
        self.microscope = SimulatedMicroscope(cfg, device=device)
        self._camera = camera_meta_from_dict(self.microscope.camera_metadata())
        self._max = max_frames
        self._interval_ms = cfg.microscope.frame_interval_ms
        self.last: SimulatedFrame | None = None
        self._laser = SimulatedLaserActuator(self)

    @property
    def camera(self) -> CameraMeta:
        return self._camera

    @property
    def shape_px(self) -> tuple[int, int]:
        return self.microscope.fov_px

    @property
    def live(self) -> bool:
        return True

    @property
    def frame_interval_ms(self) -> float:
        return self._interval_ms

    @property
    def laser_power_mw(self) -> float:
        return self.microscope.laser_power_mw

    @laser_power_mw.setter
    def laser_power_mw(self, power_mw: float) -> None:
        self.microscope.laser_power_mw = power_mw

    @property
    def laser_limits_mw(self) -> tuple[float, float]:
        return (0.0, self.microscope.cfg.microscope.laser.max_power_mw)

    @property
    def activation_laser(self) -> Actuator:
        """The simulated 405 nm laser, in mW (the source :class:`HasActivationLaser`)."""
        return self._laser

    def read(self) -> SourceFrame | None:
        if self._max is not None and self.microscope.frame_index >= self._max:
            return None
        frame = self.microscope.next_frame()
        self.last = frame
        return SourceFrame(index=frame.index, timestamp_ns=frame.timestamp_ns, pixels=frame.adu)

    def close(self) -> None:
        self.last = None


_: type[HasActivationLaser] = SimulatedSource  # the capability is declared, and checked by mypy


class SimulatedLaserActuator:
    """The 405 nm laser of a :class:`SimulatedSource`, in mW.

    Parameters
    ----------
    source
        The simulated source whose ``laser_power_mw`` is driven; its ``laser_limits_mw`` are the
        limits (0 to ``microscope.laser.max_power_mw``).
    """

    def __init__(self, source: SimulatedSource, name: str = "405 nm (simulated)") -> None:
        self._source = source
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def limits(self) -> tuple[float, float]:
        lo, hi = self._source.laser_limits_mw
        return (float(lo), float(hi))

    def get(self) -> float:
        """Laser power now, mW."""
        return float(self._source.laser_power_mw)

    def set(self, value: float) -> float:
        """Set the laser power (mW) and return it; ``ValueError`` outside :attr:`limits`."""
        power_mw = check_in_limits(self._name, value, self.limits, " mW")
        self._source.laser_power_mw = power_mw
        return self.get()
