"""The source process loop: read frames, pace them, push them, offer previews, answer control.

Live sources (a camera, the simulated microscope) are paced at the camera's frame interval and
never wait for the worker: a frame that does not fit in the queue is dropped, counted, and
announced as a ``gap``. Replays are lossless (they wait), or camera-paced and dropping like a
camera with ``realtime=True``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy.typing as npt

from live_decode.sources.base import (
    FrameSource,
    PacedByCamera,
    ReportsGaps,
    SourceGap,
    activation_laser,
)
from live_decode.transport.control import (
    ControlCommand,
    ControlReply,
    ControlServer,
    LaserReply,
    SetLaser,
    Status,
    StatusReply,
)
from live_decode.transport.frames import FramePusher
from live_decode.transport.preview import PreviewPublisher

log = logging.getLogger("live_decode.sources.runner")

EOS_WAIT_S = 60.0
"""Longest wait at the end for a busy worker to drain its queue and take the last gap + eos."""


@dataclass
class SourceSummary:
    """Totals of one source run."""

    frames_read: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    frames_lost_upstream: int = 0
    gaps_sent: int = 0
    control_requests: int = 0
    elapsed_s: float = 0.0
    eos_sent: bool = False
    #: The density loop's :meth:`~live_decode.control.loop.ControlLoop.counts` (trips,
    #: saturations, stale episodes...), when one ran.
    control: dict[str, int] | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class FrameRecorder(Protocol):
    """Keeps the acquired frames (:class:`~live_decode.io.movie.MovieRecorder`)."""

    def append(self, pixels: npt.NDArray[Any], index: int) -> None: ...


Tick = Callable[[int], None]
"""Called after every frame with its index (the density controller hooks in here)."""


def laser_handler(source: FrameSource) -> Callable[[ControlCommand], ControlReply]:
    """A control handler for the commands a bare source understands: laser power and status."""

    def handle(cmd: ControlCommand) -> ControlReply:
        laser = activation_laser(source)
        match cmd:
            case SetLaser(power_mw=power_mw):
                if laser is None:
                    raise ValueError("this source has no activation laser to set")
                return LaserReply(laser.set(power_mw))
            case Status():
                return StatusReply(laser_mw=None if laser is None else laser.get())
            case _:
                raise ValueError(f"{cmd.name} needs the density controller, which is not running")

    return handle


class SourceRunner:
    """Drives one :class:`FrameSource` into a :class:`FramePusher` until the end or a limit."""

    def __init__(
        self,
        source: FrameSource,
        pusher: FramePusher,
        *,
        preview: PreviewPublisher | None = None,
        control: ControlServer | None = None,
        realtime: bool | None = None,
        max_frames: int | None = None,
        max_seconds: float | None = None,
        on_tick: Tick | None = None,
        recorder: FrameRecorder | None = None,
    ) -> None:
        self.source = source
        self.pusher = pusher
        self.preview = preview
        self.control = control
        # A source whose read() waits for the camera is paced already; pacing again falls behind.
        paced = isinstance(source, PacedByCamera) and source.paced_by_camera
        self.realtime = (source.live and not paced) if realtime is None else realtime
        self.max_frames = max_frames
        self.max_seconds = max_seconds
        self.on_tick = on_tick
        self.recorder = recorder
        self.summary = SourceSummary()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _serve_control(self, until: float) -> None:
        """Answer control requests until ``until`` (perf_counter); at least one poll."""
        while True:
            remaining_ms = max(0, int((until - time.perf_counter()) * 1000))
            if self.control is not None:
                if self.control.serve_once(timeout_ms=min(remaining_ms, 50)):
                    self.summary.control_requests += 1
            elif remaining_ms:
                time.sleep(min(remaining_ms, 50) / 1000)
            if time.perf_counter() >= until or self._stop.is_set():
                return

    def _send_eos(self, last_index: int | None) -> bool:
        """Announce the last dropped frames and the end; a live queue may still be full."""
        deadline = time.perf_counter() + EOS_WAIT_S
        sent = self.pusher.send_eos(last_index)
        while not sent and not self._stop.is_set() and time.perf_counter() < deadline:
            sent = self.pusher.send_eos(last_index, timeout_ms=500)
        if not sent:
            log.warning("the end of stream was not delivered: is the worker running?")
        return sent

    def run(self) -> SourceSummary:
        interval_s = self.source.frame_interval_ms / 1000.0
        start = time.perf_counter()
        last_index: int | None = None
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.summary.frames_read >= self.max_frames:
                    break
                if self.max_seconds is not None and time.perf_counter() - start > self.max_seconds:
                    break
                frame = self.source.read()
                if frame is None:
                    break
                self.summary.frames_read += 1
                last_index = frame.index
                if self.recorder is not None:  # every acquired frame, sent or dropped
                    self.recorder.append(frame.pixels, frame.index)
                for gap in _take_gaps(self.source):
                    self.pusher.report_gap(gap.first, gap.count)
                cam = self.source.camera  # cheap; follows exposure/binning changes
                sent = self.pusher.send_frame(
                    frame.pixels, index=frame.index, timestamp_ns=frame.timestamp_ns, camera=cam
                )
                self.summary.frames_sent += int(sent)
                if self.preview is not None:
                    self.preview.offer(
                        frame.pixels, index=frame.index, timestamp_ns=frame.timestamp_ns, camera=cam
                    )
                if self.on_tick is not None:
                    self.on_tick(frame.index)
                due = start + self.summary.frames_read * interval_s if self.realtime else 0.0
                self._serve_control(due)
        except Exception as exc:
            # Tell the worker why the stream ends early (it logs and publishes it), then re-raise.
            self.pusher.send_error("source_failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self.summary.frames_dropped = self.pusher.frames_dropped
            self.summary.frames_lost_upstream = self.pusher.frames_lost_upstream
            self.summary.eos_sent = self._send_eos(last_index)
            self.summary.gaps_sent = self.pusher.gaps_sent
            self.summary.elapsed_s = time.perf_counter() - start
        return self.summary


def _take_gaps(source: FrameSource) -> list[SourceGap]:
    """Frames a source lost before reading them (camera sources that :class:`ReportsGaps`)."""
    return source.take_gaps() if isinstance(source, ReportsGaps) else []
