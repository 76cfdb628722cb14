"""Value checks at the worker's door: a well-formed ``frame`` or ``gap`` that would crash the
worker or poison the stream is rejected (and counted by the worker like a malformed message).

:func:`~live_decode.messages.decode` has checked types, sizes and that numbers are finite; this
checks what the values mean:

- camera calibration within physical ranges (:data:`CAMERA_RANGES`: an EM gain or QE of 0
  would divide by zero in the photon conversion; an sCMOS has EM gain 1, never less);
- frame and gap indices in ``[0, MAX_INDEX)`` (int64-safe and exact as float64);
- order: a frame must come after the last one admitted, and may skip ahead by at most
  ``max_index_jump_frames`` plus the frames announced by ``gap`` messages since then — so one
  stray index of 10¹⁵ is rejected instead of making every later, normal frame look out of order.
  A rejected message never moves the expected index;
- a gap of at most ``max_gap_frames`` frames;
- frame size: the stream's (H, W), at least the model's minimum; float pixels all finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from live_decode.inference.compat import MIN_FRAME_PX
from live_decode.messages import CameraMeta, FrameMsg, GapMsg

#: Frame indices (and the end of a gap) stay below 2⁵³: exact in float64, safe in int64.
MAX_INDEX: Final = 2**53
#: ``timestamp_ns`` must fit an int64 (numpy, HDF5).
MAX_TIMESTAMP_NS: Final = 2**63 - 1

#: (low, high, low is allowed) for each camera field; high is always allowed. Generous bounds:
#: they catch a unit slip or a zero, not an unusual camera.
CAMERA_RANGES: Final[dict[str, tuple[float, float, bool]]] = {
    "pixel_size_nm": (0.0, 1e5, False),
    "baseline_adu": (0.0, 1e7, True),
    "e_per_adu": (0.0, 1e4, False),
    "em_gain": (1.0, 1e5, True),
    "qe": (0.0, 1.0, False),
    "exposure_ms": (0.0, 1e7, True),
    "spurious_charge_e": (0.0, 1e4, True),
    "read_noise_e": (0.0, 1e5, True),
}


@dataclass(frozen=True)
class DoorLimits:
    """What the worker admits.

    Attributes
    ----------
    max_index_jump_frames
        Largest forward jump of the frame index beyond ``last + 1`` and the frames announced by
        gaps since the last frame. A source that loses frames announces them with ``gap``.
    max_gap_frames
        Largest ``count`` of one gap (10⁹ frames: 11 days at 1 kHz).
    min_frame_px
        Smallest frame height and width the model can localize on.
    """

    max_index_jump_frames: int = 10_000
    max_gap_frames: int = 10**9
    min_frame_px: int = MIN_FRAME_PX


DEFAULT_DOOR_LIMITS: Final = DoorLimits()


def camera_problem(camera: CameraMeta) -> str | None:
    """Why this calibration cannot be used (None if it can)."""
    for name, (low, high, low_ok) in CAMERA_RANGES.items():
        value = float(getattr(camera, name))
        inside = (value >= low if low_ok else value > low) and value <= high
        if not (math.isfinite(value) and inside):
            bracket = "[" if low_ok else "("
            return f"camera {name} = {value:g} is outside {bracket}{low:g}, {high:g}]"
    return None


class FrameDoor:
    """Admits the frames and gaps of one stream in order; keeps the expected index.

    Call :meth:`frame_problem` / :meth:`gap_problem` for each message: None means admitted (and
    the door's state advanced), a string is the reason to reject it (state unchanged).
    """

    def __init__(self, limits: DoorLimits = DEFAULT_DOOR_LIMITS) -> None:
        self.limits = limits
        self.last_index: int | None = None
        self.shape_px: tuple[int, int] | None = None
        self._announced = 0  # frames announced by gaps since the last admitted frame

    def frame_problem(self, frame: FrameMsg) -> str | None:
        """Check ``frame``; admit it (None) or say why not."""
        problem = self._check_frame(frame)
        if problem is None:
            self.last_index = frame.index
            self.shape_px = (int(frame.pixels.shape[0]), int(frame.pixels.shape[1]))
            self._announced = 0
        return problem

    def gap_problem(self, gap: GapMsg) -> str | None:
        """Check ``gap``; admit it (None) or say why not."""
        lim = self.limits
        if not 0 <= gap.first < MAX_INDEX or gap.first + gap.count > MAX_INDEX:
            return f"gap {gap.first}+{gap.count} reaches beyond frame index 2**53"
        if gap.count > lim.max_gap_frames:
            return f"gap of {gap.count} frames exceeds the limit of {lim.max_gap_frames}"
        self._announced = min(self._announced + gap.count, MAX_INDEX)
        return None

    def _check_frame(self, frame: FrameMsg) -> str | None:
        i = frame.index
        if not 0 <= i < MAX_INDEX:
            return f"frame index {i} is outside [0, 2**53)"
        if not 0 <= frame.timestamp_ns <= MAX_TIMESTAMP_NS:
            return f"frame {i}: timestamp_ns {frame.timestamp_ns} does not fit an int64"
        last = self.last_index
        if last is not None and i <= last:
            return f"frame {i} does not follow frame {last} (duplicate or out of order)"
        if last is not None:
            jump = i - last - 1 - self._announced
            if jump > self.limits.max_index_jump_frames:
                return (
                    f"frame {i} jumps {jump} frames past frame {last} without a gap announcing "
                    f"them (limit {self.limits.max_index_jump_frames})"
                )
        h, w = (int(s) for s in frame.pixels.shape)
        if self.shape_px is not None and (h, w) != self.shape_px:
            want = "×".join(map(str, self.shape_px))
            return f"frame {i} is {h}×{w} px, the stream is {want} px"
        least = self.limits.min_frame_px
        if min(h, w) < least:
            return f"frame {i} is {h}×{w} px, smaller than the model's minimum of {least} px"
        cam = camera_problem(frame.camera)
        if cam is not None:
            return f"frame {i}: {cam}"
        if frame.pixels.dtype.kind == "f" and not np.isfinite(frame.pixels).all():
            return f"frame {i} has NaN or infinite pixels"
        return None
