"""The frame-source contract every source implements, and the capabilities a source may add.

Every source is a :class:`FrameSource`. What only some sources offer is declared by small
runtime-checkable capability Protocols, checked with ``isinstance`` (never ``hasattr``):

- :class:`HasActivationLaser`: an activation (405 nm) laser the density controller can drive;
- :class:`ReportsGaps`: frames the camera lost before they were read (sent as ``gap`` messages);
- :class:`PacedByCamera`: ``read`` waits for the camera, so a runner must not pace it again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from live_decode.config import Config
from live_decode.messages import CameraMeta


@dataclass(frozen=True, eq=False)
class SourceFrame:
    """One frame from a source: (H, W) pixels in ADU, its 0-based index and capture time."""

    index: int
    timestamp_ns: int
    pixels: npt.NDArray[np.generic]


@runtime_checkable
class FrameSource(Protocol):
    """A source of camera frames.

    ``read`` returns the next frame, or None at the end of a finite source. ``live`` sources
    (a camera) produce frames whether or not anyone reads them and must never be blocked by a
    slow consumer; non-live sources (replay) wait for the reader. ``frame_interval_ms`` is the
    camera's frame period, used to pace replays at camera speed.
    """

    @property
    def camera(self) -> CameraMeta: ...

    @property
    def shape_px(self) -> tuple[int, int]: ...

    @property
    def live(self) -> bool: ...

    @property
    def frame_interval_ms(self) -> float: ...

    def read(self) -> SourceFrame | None: ...

    def close(self) -> None: ...


@runtime_checkable
class Actuator(Protocol):
    """One settable value with hard limits (what the density controller drives).

    Attributes
    ----------
    name : str
        Human-readable label for logs and the control trace, e.g. ``"405 nm (simulated)"``.
    limits : (float, float)
        (lowest, highest) value the device accepts, in the actuator's unit (mW for power).
    """

    @property
    def name(self) -> str: ...

    @property
    def limits(self) -> tuple[float, float]: ...

    def get(self) -> float:
        """The value now applied."""
        ...

    def set(self, value: float) -> float:
        """Apply ``value``; return the value applied.

        Raises
        ------
        ValueError
            If ``value`` is not finite or lies outside :attr:`limits`; nothing is changed then.
        """
        ...


def check_in_limits(name: str, value: float, limits: tuple[float, float], unit: str = "") -> float:
    """``value`` as a float if finite and within ``limits``, else a ``ValueError`` naming both."""
    lo, hi = limits
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(
            f"{name}: {value!r}{unit} is outside the limits [{lo:g}, {hi:g}]{unit}; "
            "ask for a value within them"
        )
    return v


@dataclass(frozen=True)
class SourceGap:
    """``count`` frames the camera produced that were overwritten before they were read."""

    first: int
    """Index the first lost frame would have had."""
    count: int


@runtime_checkable
class HasActivationLaser(Protocol):
    """A source that can own an activation laser; ``activation_laser`` is None without one."""

    @property
    def activation_laser(self) -> Actuator | None: ...


@runtime_checkable
class ReportsGaps(Protocol):
    """A source that knows which frames its camera lost before they were read."""

    def take_gaps(self) -> list[SourceGap]:
        """The gaps detected since the last call, oldest first."""
        ...


@runtime_checkable
class PacedByCamera(Protocol):
    """A source whose ``read`` waits for the camera (True): pacing it again falls behind."""

    @property
    def paced_by_camera(self) -> bool: ...


def activation_laser(source: FrameSource) -> Actuator | None:
    """The source's activation laser, or None when it has none."""
    return source.activation_laser if isinstance(source, HasActivationLaser) else None


def camera_from_config(cfg: Config) -> CameraMeta:
    """Camera metadata as the config describes it (:meth:`CameraMeta.from_config`)."""
    return CameraMeta.from_config(cfg)
