"""The frame-source contract every source implements (replay, simulated, Micro-Manager)."""

from __future__ import annotations

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


def camera_from_config(cfg: Config) -> CameraMeta:
    """Camera metadata as the config describes it (for sources that do not report it)."""
    c = cfg.camera
    return CameraMeta(
        pixel_size_nm=c.pixel_size_nm,
        baseline_adu=c.baseline_adu,
        e_per_adu=c.e_per_adu,
        em_gain=c.em_gain if c.kind == "emccd" else 1.0,
        qe=c.qe,
        exposure_ms=cfg.microscope.exposure_ms,
        spurious_charge_e=c.spurious_charge_e,
        read_noise_e=c.read_noise_e,
    )
