"""The Micro-Manager source: frames from a pymmcore-plus core's circular buffer, as they come.

Works with any ``CMMCorePlus`` (C++ device adapters) and with ``UniMMCore`` (Python devices too).
:meth:`MMSource.read` starts a continuous sequence acquisition on first use and pops the oldest
frame of the circular buffer. While the buffer is empty it sleeps :attr:`poll_s` between checks:
a Python camera runs in a thread of this process, and a busy loop starves it of the GIL
(measured: 2,900 frames/s popped with a 0.5 ms sleep, 400 without).

Lost frames. When the reader falls behind by more than the circular buffer holds, the core
overwrites the oldest frames (UniMMCore) or clears the buffer (MMCore); neither reliably reports
it, but the ``ImageNumber`` the core stamps on every frame jumps. The jump is counted in
:attr:`~MMSource.frames_lost`, the frame's ``index`` jumps by the same amount (the worker then
restarts its temporal context, as after any gap), and :meth:`~MMSource.take_gaps` lists the gaps
for a runner that announces them as ``gap`` messages.

Camera metadata is read from the core at start and again whenever the camera's properties,
exposure or the pixel size change (core signals) or a frame's binning differs.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from live_decode.closeable import Closeable
from live_decode.config import Config, MMSourceConfig
from live_decode.errors import ConfigError, LiveDecodeError
from live_decode.messages import CameraMeta
from live_decode.sources.base import SourceFrame, SourceGap
from live_decode.sources.mm_camera import (
    CALIBRATION_FIELDS,
    NEUTRAL,
    REPORTED_PROPERTIES,
    MMCamera,
    as_float,
    calibration_from_config,
)
from live_decode.sources.mm_core import (
    MMDeviceError,
    close_core,
    discard_core,
    open_core,
)
from live_decode.sources.mm_laser import MMPropertyActuator

__all__ = [
    "CALIBRATION_FIELDS",
    "NEUTRAL",
    "REPORTED_PROPERTIES",
    "MMFrameMeta",
    "MMSource",
]

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from pymmcore_plus import CMMCorePlus, Metadata

log = logging.getLogger("live_decode.sources.mm")


@dataclass(frozen=True)
class MMFrameMeta:
    """What the core reported with one frame (``metadata``: all its tags, as strings)."""

    index: int
    image_number: int
    elapsed_ms: float
    exposure_ms: float
    binning: str
    metadata: Metadata


class MMSource(Closeable):
    """Frames from a Micro-Manager core's camera (a live :class:`FrameSource`).

    Parameters
    ----------
    core
        A core with its devices loaded and initialized.
    camera
        Camera device label; None = the core's current camera.
    defaults
        :data:`CALIBRATION_FIELDS` values for what the camera does not report (e.g. the
        ``camera`` section of the config). Anything missing falls back to :data:`NEUTRAL`.
    overrides
        :data:`CALIBRATION_FIELDS` values that replace what the camera reports.
    buffer_mb
        Circular buffer size in MiB; None keeps the core's.
    exposure_ms
        Set on the camera now; None keeps the current exposure.
    laser
        The activation laser, offered as :attr:`activation_laser` (the controller and the
        control channel drive it).
    frame_timeout_s
        Longest wait for a frame (at least 3 frame periods) before :meth:`read` raises.
    poll_s
        Sleep between buffer checks while it is empty.
    owns_core
        True: :meth:`close` unloads every device (the source process owns the core).
    autostart
        Start acquisition on the first :meth:`read`.

    Raises
    ------
    MMDeviceError
        No camera, an unknown camera label, a colour camera, or a buffer too small for a frame.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        *,
        camera: str | None = None,
        defaults: Mapping[str, float] | None = None,
        overrides: Mapping[str, float] | None = None,
        buffer_mb: int | None = None,
        exposure_ms: float | None = None,
        laser: MMPropertyActuator | None = None,
        frame_timeout_s: float = 10.0,
        poll_s: float = 0.0005,
        owns_core: bool = True,
        autostart: bool = True,
    ) -> None:
        self._cam = MMCamera(core, camera, defaults=defaults, overrides=overrides)
        label = self._cam.label
        if buffer_mb is not None:
            core.setCircularBufferMemoryFootprint(int(buffer_mb))
        if exposure_ms is not None:
            core.setExposure(float(exposure_ms))
        self._core: CMMCorePlus | None = core
        self._label = label
        self.laser = laser
        self.frame_timeout_s = float(frame_timeout_s)
        self.poll_s = float(poll_s)
        self._owns_core = owns_core
        self._autostart = autostart
        self._running = False
        self._cam.refresh()  # after the exposure was set
        # (MMCore reports no capacity before its buffer was first allocated: compute it)
        buffer_mib = int(core.getCircularBufferMemoryFootprint())
        if buffer_mib * 2**20 < 2 * int(core.getImageBufferSize()):
            self._cam.close()
            raise MMDeviceError(
                f"the circular buffer ({buffer_mib} MiB) holds fewer than 2 frames of "
                f"{self._cam.shape_px} px: raise source.buffer_mb"
            )
        # acquisition bookkeeping: index = base + ImageNumber within one acquisition
        self._base = 0
        self._expected = 0
        self._next_index = 0
        self._t0_ns = 0
        self.frames_read = 0
        self.frames_lost = 0
        self.gaps_detected = 0
        self._gaps: deque[SourceGap] = deque(maxlen=100_000)
        self.last_frame: MMFrameMeta | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> MMSource:
        """Open the core ``cfg.source`` describes and wrap it; the source owns the core.

        The ``camera`` section supplies what the camera does not report; values set in the
        ``source`` section override what it does report.
        """
        src = cfg.source
        if not isinstance(src, MMSourceConfig):
            raise ConfigError(
                f"source.kind must be 'mm' for the Micro-Manager source, got {src.kind!r}"
            )
        defaults, overrides = calibration_from_config(cfg)
        core = open_core(src.system_config, src.adapter_path)
        try:
            laser = (
                MMPropertyActuator(core, src.laser_device, src.laser_property)
                if src.laser_device
                else None
            )
            return cls(
                core,
                camera=src.camera,
                defaults=defaults,
                overrides=overrides,
                buffer_mb=src.buffer_mb,
                exposure_ms=src.exposure_ms,
                laser=laser,
                frame_timeout_s=src.frame_timeout_s,
            )
        except BaseException as exc:
            error = exc
        # Free the core now (pymmcore can abort an interpreter that finalizes one): out of the
        # except block, and, for errors whose message says it all, without the traceback,
        # whose frames hold the core.
        discard_core(core)
        del core
        if isinstance(error, LiveDecodeError | ValueError):
            error.__traceback__ = None
            gc.collect()
        raise error

    # ------------------------------------------------------------------ FrameSource
    @property
    def camera(self) -> CameraMeta:
        """Calibration and settings of the camera now (re-read when they change)."""
        return self._cam.camera

    @property
    def calibration_sources(self) -> dict[str, str]:
        """Where each camera value came from (config, camera property, pixel-size preset)."""
        return self._cam.calibration_sources

    @property
    def shape_px(self) -> tuple[int, int]:
        """(height, width) of the frames, px."""
        return self._cam.shape_px

    @property
    def paced_by_camera(self) -> bool:
        """``read`` waits for the camera: the runner must not pace it again."""
        return True

    @property
    def live(self) -> bool:
        return True

    @property
    def frame_interval_ms(self) -> float:
        """The camera's exposure, ms (the frame period of a free-running camera)."""
        return self._cam.exposure_ms

    def read(self) -> SourceFrame | None:
        """The oldest frame not yet read; waits for one while acquiring.

        Returns None once acquisition was stopped (:meth:`stop`, or the camera stopped by
        itself) and the buffer is drained, or after :meth:`close`.

        Raises
        ------
        MMDeviceError
            If no frame arrives within :attr:`frame_timeout_s` (or 3 frame periods).
        """
        core = self._core
        if core is None:
            return None
        if not self._running and self._autostart and self._t0_ns == 0:
            self.start()
        deadline: float | None = None
        while True:
            if core.getRemainingImageCount() > 0:
                try:
                    pixels, md = core.popNextImageAndMD(fix=False)
                except IndexError:
                    # MMCore clears its whole buffer on overflow, possibly between the count
                    # and the pop; the image numbers of the next frame show what was lost.
                    continue
                return self._frame(pixels, md)
            if not self._running:
                return None
            if not core.isSequenceRunning():
                if core.getRemainingImageCount() > 0:  # the last frames landed meanwhile
                    continue
                log.warning("camera %r stopped acquiring by itself", self._label)
                self._running = False
                return None
            now = time.monotonic()
            timeout_s = max(self.frame_timeout_s, 3e-3 * self._cam.exposure_ms)
            if deadline is None:
                deadline = now + timeout_s
            elif now > deadline:
                raise MMDeviceError(
                    f"no frame from camera {self._label!r} in {timeout_s:g} s while acquiring: "
                    "is it waiting for an external trigger, or has it failed? "
                    "(source.frame_timeout_s sets this limit)"
                )
            time.sleep(self.poll_s)

    def close(self) -> None:
        """Stop acquisition; if the source owns the core, unload every device. Idempotent.

        The source drops its references to the core (and the laser's), so a core nobody else
        holds is freed now, not at interpreter exit, where pymmcore can abort the process.
        """
        core, self._core = self._core, None
        if core is None:
            return
        self._running = False
        self._cam.close()
        self.laser = None
        if self._owns_core:
            close_core(core)
        elif core.isSequenceRunning():
            core.stopSequenceAcquisition()
        alive = weakref.ref(core)
        del core
        if alive() is not None:
            # Loading '#py' devices leaves the core in a reference cycle (pymmcore-plus 0.18
            # keeps a traceback of the C++ attempt): only the cycle collector frees it.
            gc.collect()

    # ------------------------------------------------------------------ control
    @property
    def core(self) -> CMMCorePlus:
        """The core (until :meth:`close`)."""
        if self._core is None:
            raise MMDeviceError("the Micro-Manager source is closed")
        return self._core

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._core is None

    @property
    def running(self) -> bool:
        """True while a sequence acquisition started by :meth:`start` runs."""
        return self._running

    def start(self) -> None:
        """Start continuous acquisition (stopping any other sequence on this core first)."""
        core = self.core
        if self._running:
            return
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()
        self._cam.refresh()
        self._base, self._expected = self._next_index, 0
        self._t0_ns = time.time_ns()
        core.startContinuousSequenceAcquisition(0)
        self._running = True
        log.info(
            "acquiring from camera %r: %d×%d px, %.3g ms",
            self._label,
            *self._cam.shape_px,
            self._cam.exposure_ms,
        )

    def stop(self) -> None:
        """Stop acquisition; :meth:`read` returns the frames still buffered, then None."""
        self._running = False
        core = self._core
        if core is not None and core.isSequenceRunning():
            core.stopSequenceAcquisition()

    def take_gaps(self) -> list[SourceGap]:
        """The gaps detected since the last call (oldest first), for ``gap`` messages."""
        out = list(self._gaps)
        self._gaps.clear()
        return out

    @property
    def activation_laser(self) -> MMPropertyActuator | None:
        """The activation laser (``source.laser_device``), None when none is configured."""
        return self.laser

    # ------------------------------------------------------------------ internals
    def _frame(self, pixels: npt.NDArray[np.generic], md: Metadata) -> SourceFrame:
        number = _as_int(md.get("ImageNumber"), self._expected)
        if number < self._expected:  # renumbered: an acquisition restarted behind our back
            log.warning(
                "camera %r restarted its image numbers (%d after %d)",
                self._label,
                number,
                self._expected - 1,
            )
            self._base = self._next_index - number
        elif number > self._expected:
            lost = number - self._expected
            gap = SourceGap(first=self._base + self._expected, count=lost)
            self.frames_lost += lost
            self.gaps_detected += 1
            self._gaps.append(gap)
            log.log(
                logging.WARNING if self.gaps_detected == 1 else logging.DEBUG,
                "%d frame(s) from %d were overwritten in the circular buffer before they "
                "were read (counted, sent as gaps); a larger source.buffer_mb or a faster "
                "consumer avoids this",
                lost,
                gap.first,
            )
        index = self._base + number
        self._expected = number + 1
        self._next_index = index + 1
        elapsed_ms = as_float(md.get("ElapsedTime-ms"))
        timestamp_ns = (
            self._t0_ns + int(elapsed_ms * 1e6) if elapsed_ms is not None else time.time_ns()
        )
        self._cam.note_binning(md.get("Binning"))
        if self._cam.dirty:
            self._cam.refresh()
        self.frames_read += 1
        self.last_frame = MMFrameMeta(
            index=index,
            image_number=number,
            elapsed_ms=elapsed_ms or 0.0,
            exposure_ms=self._cam.exposure_ms,
            binning=self._cam.binning,
            metadata=md,
        )
        return SourceFrame(index=index, timestamp_ns=timestamp_ns, pixels=pixels)


def _as_int(value: object, default: int) -> int:
    try:
        return int(str(value)) if value is not None else default
    except ValueError:
        return default
