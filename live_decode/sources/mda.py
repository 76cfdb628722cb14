"""The frames of a pymmcore-plus MDA (``core.run_mda(sequence)``) as a live frame source.

:class:`MDAStream` listens to a core's ``mda.events``: ``frameReady`` hands it every frame the
MDA acquires, with the event that commanded it and the frame metadata (camera, exposure, the
runner's clock). Whoever runs the MDA — a script, napari-micromanager, pymmcore-gui, or our own
source process (:class:`MDASource`) — keeps running it; the stream only listens, next to any
writer the MDA has (``output="raw.ome.tiff"``).

Never stalling the MDA. ``frameReady`` is emitted on the MDA's own thread, so the slot only
puts the frame in a bounded queue (``queue_frames``); a frame that does not fit is dropped,
counted in :attr:`MDAStream.frames_dropped`, and reported as a gap before the next frame that is
read (:class:`~live_decode.sources.base.ReportsGaps`), so the worker restarts its temporal
context there instead of bridging the lost frames.

Frame indices count every frame of the camera since the stream was made (across sequences),
0-based. What the MDA said about each frame travels in the frame's camera metadata
(``CameraMeta.extra``): ``camera``, ``mda_sequence`` (0-based count of sequences),
``mda_index`` (the event's index, e.g. ``{"t": 12}``) and ``runner_time_ms``; its exposure is
the frame's ``exposure_ms``, its timestamp the sequence's start plus the runner's time.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pymmcore_plus._util import listeners_connected  # pinned 0.18.1 (see pyproject)

from live_decode.closeable import Closeable
from live_decode.config import Config, MMSourceConfig
from live_decode.errors import ConfigError, LiveDecodeError
from live_decode.messages import CameraMeta
from live_decode.sources.base import SourceFrame, SourceGap
from live_decode.sources.mm_camera import MMCamera, as_float, calibration_from_config
from live_decode.sources.mm_core import MMDeviceError, close_core, discard_core, open_core
from live_decode.sources.mm_laser import MMPropertyActuator

if TYPE_CHECKING:
    import numpy.typing as npt
    from pymmcore_plus import CMMCorePlus
    from useq import MDAEvent, MDASequence

log = logging.getLogger("live_decode.sources.mda")

DEFAULT_QUEUE_FRAMES = 64
"""Frames the stream holds for a slow reader before it drops (and counts) the next ones."""


@dataclass(frozen=True)
class MDAFrameInfo:
    """What the MDA reported with one frame."""

    index: int
    """The frame's index in the stream (0-based, across sequences)."""
    sequence: int
    """0-based count of the MDA sequences this stream has seen."""
    event_index: Mapping[str, int]
    """The MDA event's index, e.g. ``{"t": 12}`` (axis keys as useq names them)."""
    runner_time_ms: float
    """ms since the sequence started (the MDA runner's clock)."""
    exposure_ms: float
    camera: str
    timestamp_ns: int
    """Wall-clock time of the frame: the sequence's start plus ``runner_time_ms``."""


@dataclass(frozen=True)
class _Queued:
    pixels: npt.NDArray[Any]
    info: MDAFrameInfo
    gap: SourceGap | None = None  # frames dropped just before this one


@dataclass
class MDAStreamCounts:
    """Totals of an :class:`MDAStream`."""

    frames_seen: int = 0
    frames_queued: int = 0
    frames_dropped: int = 0
    frames_other_camera: int = 0
    sequences_started: int = 0
    sequences_finished: int = 0
    sequences_canceled: int = 0
    event_axes: set[str] = field(default_factory=set)


class MDAStream(Closeable):
    """The frames one camera acquires in a core's MDA runs (a live :class:`FrameSource`).

    Parameters
    ----------
    core
        The core whose ``mda`` is listened to (the user's own core: it is never closed here).
    camera
        The camera's description (label, calibration); frames of other cameras are skipped.
    laser
        The activation laser on the same core, offered as :attr:`activation_laser`.
    queue_frames
        Frames held for the reader; beyond, frames are dropped and counted (never waits).
    sequences
        The stream ends (:meth:`read` returns None once drained) after this many sequences
        finished; None: only :meth:`stop` or :meth:`close` end it.
    poll_s
        How long :meth:`read` waits between checks for the end of the stream.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        camera: MMCamera,
        *,
        laser: MMPropertyActuator | None = None,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
        sequences: int | None = None,
        poll_s: float = 0.05,
    ) -> None:
        if queue_frames < 1:
            raise ValueError(f"queue_frames must be at least 1, got {queue_frames}")
        self._core: CMMCorePlus | None = core
        self._cam = camera
        self.laser = laser
        self.sequences = sequences
        self.poll_s = float(poll_s)
        self.counts = MDAStreamCounts()
        self._queue: queue.Queue[_Queued] = queue.Queue(maxsize=queue_frames)
        self._lock = threading.Lock()  # the MDA thread and the reader share the counters
        self._next_index = 0
        self._pending_gap: SourceGap | None = None
        self._gaps: deque[SourceGap] = deque(maxlen=100_000)
        self._seq_t0_ns = time.time_ns()
        self._ended = threading.Event()
        self._last: MDAFrameInfo | None = None
        # Where a Qt app runs (napari, pymmcore-gui), the core's signals are Qt signals, whose
        # slots would be queued to the GUI thread (unbounded, and stalled by a busy GUI):
        # connect directly, so the slot runs on the MDA's thread and this bounded queue holds.
        # (pymmcore-plus connects its own output handlers the same way.)
        self._listening = ExitStack()
        self._listening.enter_context(
            listeners_connected(
                core.mda.events, _Slots(self), qt_connection_type="DirectConnection"
            )
        )

    # ------------------------------------------------------------------ MDA thread
    def _on_sequence_started(self, sequence: MDASequence, *_: object) -> None:
        with self._lock:
            self._seq_t0_ns = time.time_ns()
            self.counts.sequences_started += 1
        log.info("MDA sequence %d started on %r", self.counts.sequences_started, self._cam.label)

    def _on_frame_ready(
        self, img: npt.NDArray[Any], event: MDAEvent, meta: Mapping[str, Any]
    ) -> None:
        """Queue the frame, or drop and count it; never blocks (the MDA's thread)."""
        if self._ended.is_set():
            return
        camera = str(meta.get("camera_device") or self._cam.label)
        with self._lock:
            self.counts.frames_seen += 1
            if camera != self._cam.label:
                self.counts.frames_other_camera += 1
                return
            index = self._next_index
            self._next_index += 1
            runner_ms = as_float(meta.get("runner_time_ms")) or 0.0
            info = MDAFrameInfo(
                index=index,
                sequence=max(0, self.counts.sequences_started - 1),
                event_index={str(getattr(k, "value", k)): int(v) for k, v in event.index.items()},
                runner_time_ms=runner_ms,
                exposure_ms=as_float(meta.get("exposure_ms")) or self._cam.exposure_ms,
                camera=camera,
                timestamp_ns=self._seq_t0_ns + int(runner_ms * 1e6),
            )
            if not self.counts.event_axes.issuperset(info.event_index):
                self._new_axes(info.event_index)
            try:
                self._queue.put_nowait(_Queued(img, info, self._pending_gap))
            except queue.Full:
                self._drop(index)
                return
            self._pending_gap = None
            self.counts.frames_queued += 1
        binning = (meta.get("camera_metadata") or {}).get("Binning")
        self._cam.note_binning(binning)

    def _new_axes(self, event_index: Mapping[str, int]) -> None:
        self.counts.event_axes.update(event_index)
        others = sorted(self.counts.event_axes - {"t"})
        if others:
            log.warning(
                "the MDA has axes %s besides time: their frames are localized as one series "
                "in acquisition order (the temporal context then mixes them); SMLM needs a "
                "time-lapse of one channel and position",
                others,
            )

    def _drop(self, index: int) -> None:
        if self.counts.frames_dropped == 0:
            log.warning(
                "the reader is not keeping up with the MDA: dropping frames (counted, sent as "
                "gaps); the MDA itself is not slowed"
            )
        self.counts.frames_dropped += 1
        gap = self._pending_gap
        self._pending_gap = (
            SourceGap(first=index, count=1) if gap is None else replace(gap, count=gap.count + 1)
        )

    def _on_sequence_canceled(self, *_: object) -> None:
        with self._lock:
            self.counts.sequences_canceled += 1

    def _on_sequence_finished(self, *_: object) -> None:
        with self._lock:
            self.counts.sequences_finished += 1
            done = self.sequences is not None and self.counts.sequences_finished >= self.sequences
        log.info("MDA sequence %d finished", self.counts.sequences_finished)
        if done:
            self._ended.set()

    # ------------------------------------------------------------------ FrameSource
    @property
    def camera(self) -> CameraMeta:
        """The camera's calibration, with what the MDA said about the frame last read."""
        cam = self._cam.camera
        info = self._last
        if info is None:
            return cam
        extra = {
            **cam.extra,
            "camera": info.camera,
            "mda_sequence": info.sequence,
            "mda_index": dict(info.event_index),
            "runner_time_ms": info.runner_time_ms,
        }
        return replace(cam, exposure_ms=info.exposure_ms, extra=extra)

    @property
    def calibration_sources(self) -> dict[str, str]:
        """Where each camera value came from (config, camera property, pixel-size preset)."""
        return self._cam.calibration_sources

    @property
    def shape_px(self) -> tuple[int, int]:
        """(height, width) of the frames, px."""
        if self._cam.dirty and self._core is not None:
            self._cam.refresh()
        return self._cam.shape_px

    @property
    def live(self) -> bool:
        return True

    @property
    def paced_by_camera(self) -> bool:
        """``read`` waits for the MDA: a runner must not pace it again."""
        return True

    @property
    def frame_interval_ms(self) -> float:
        """The camera's exposure, ms."""
        return self._cam.exposure_ms

    @property
    def activation_laser(self) -> MMPropertyActuator | None:
        return self.laser

    @property
    def last_info(self) -> MDAFrameInfo | None:
        """What the MDA reported with the frame last read."""
        return self._last

    @property
    def ended(self) -> bool:
        """True once the stream ended (its sequences finished, :meth:`stop`, :meth:`close`)."""
        return self._ended.is_set()

    @property
    def frames_dropped(self) -> int:
        return self.counts.frames_dropped

    def read(self) -> SourceFrame | None:
        """The oldest queued frame; waits for one. None once the stream ended and is drained."""
        while True:
            frame = self.poll(self.poll_s)
            if frame is not None or self._ended.is_set():
                return frame

    def poll(self, timeout_s: float) -> SourceFrame | None:
        """The oldest queued frame, or None if none comes within ``timeout_s``."""
        try:
            item = self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            if self._ended.is_set():
                self._flush_pending_gap()
            return None
        if item.gap is not None:
            self._gaps.append(item.gap)
        self._last = item.info
        info = item.info
        return SourceFrame(index=info.index, timestamp_ns=info.timestamp_ns, pixels=item.pixels)

    def _flush_pending_gap(self) -> None:
        with self._lock:
            gap, self._pending_gap = self._pending_gap, None
        if gap is not None:
            self._gaps.append(gap)

    def take_gaps(self) -> list[SourceGap]:
        """Frames dropped before the frame last read (and, at the end, the last ones)."""
        out = list(self._gaps)
        self._gaps.clear()
        return out

    def resume(self) -> None:
        """Take frames again after :meth:`stop` (not after :meth:`close`)."""
        if self._core is not None:
            self._ended.clear()

    def stop(self) -> None:
        """End the stream: frames acquired from now on are ignored; queued ones are still read."""
        self._ended.set()

    def close(self) -> None:
        """Stop listening to the core (which is left to its owner). Idempotent."""
        self._ended.set()
        core, self._core = self._core, None
        if core is None:
            return
        self._listening.close()
        self._cam.close()
        self.laser = None


class _Slots:
    """The MDA signals an :class:`MDAStream` listens to, by their pymmcore-plus names."""

    def __init__(self, stream: MDAStream) -> None:
        self.sequenceStarted = stream._on_sequence_started
        self.frameReady = stream._on_frame_ready
        self.sequenceCanceled = stream._on_sequence_canceled
        self.sequenceFinished = stream._on_sequence_finished


def parse_sequence(value: object, what: str = "source.mda") -> MDASequence:
    """A useq ``MDASequence`` from a mapping, a YAML/JSON file path or a sequence.

    Raises
    ------
    ConfigError
        The file does not exist or useq refuses the sequence (its message is kept).
    """
    from pathlib import Path

    import useq
    from pydantic import ValidationError

    if isinstance(value, useq.MDASequence):
        return value
    try:
        if isinstance(value, str | Path):
            path = Path(value)
            if not path.is_file():
                raise ConfigError(f"{what}: {path}: no such useq sequence file (YAML or JSON)")
            return useq.MDASequence.from_file(path)
        return useq.MDASequence.model_validate(value)
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"{what}: not a valid useq MDASequence: {exc}") from None


class MDASource(MDAStream):
    """The MDA source of ``live-decode run``: a core of its own that runs one useq sequence.

    :meth:`read` starts ``core.run_mda(sequence)`` on first use; the stream ends when the
    sequence finishes. :meth:`close` cancels a running MDA, waits for it and unloads the core.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        camera: MMCamera,
        sequence: MDASequence,
        *,
        laser: MMPropertyActuator | None = None,
        queue_frames: int = DEFAULT_QUEUE_FRAMES,
    ) -> None:
        super().__init__(core, camera, laser=laser, queue_frames=queue_frames, sequences=1)
        self.sequence = sequence
        self._owned: CMMCorePlus | None = core
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, cfg: Config) -> MDASource:
        """Open the core ``cfg.source`` describes; the source owns it and runs ``source.mda``."""
        src = cfg.source
        if not isinstance(src, MMSourceConfig) or src.mda is None:
            raise ConfigError("the MDA source needs source.kind 'mm' with a source.mda sequence")
        sequence = parse_sequence(src.mda)
        defaults, overrides = calibration_from_config(cfg)
        core = open_core(src.system_config, src.adapter_path)
        try:
            cam = MMCamera(core, src.camera, defaults=defaults, overrides=overrides)
            if src.exposure_ms is not None:
                core.setExposure(float(src.exposure_ms))
                cam.refresh()
            core.setCircularBufferMemoryFootprint(int(src.buffer_mb))
            laser = (
                MMPropertyActuator(core, src.laser_device, src.laser_property)
                if src.laser_device
                else None
            )
            return cls(core, cam, sequence, laser=laser)
        except BaseException as exc:
            error = exc
        discard_core(core)  # out of the except block: no traceback holds the core
        del core
        if isinstance(error, LiveDecodeError | ValueError):
            error.__traceback__ = None
            gc.collect()
        raise error

    def start(self) -> None:
        """Start the MDA on its thread (once)."""
        core = self._owned
        if core is None:
            raise MMDeviceError("the MDA source is closed")
        if self._thread is not None:
            return
        log.info("running the MDA: %s", self.sequence)
        self._thread = core.run_mda(self.sequence)

    def read(self) -> SourceFrame | None:
        if self._thread is None and not self.ended:
            self.start()
        return super().read()

    def close(self) -> None:
        core, self._owned = self._owned, None
        if core is not None and core.mda.is_running():
            core.mda.cancel()
        if self._thread is not None:
            self._thread.join(30)
        super().close()
        if core is None:
            return
        close_core(core)
        alive = weakref.ref(core)
        del core
        if alive() is not None:
            gc.collect()  # Python devices leave the core in a reference cycle (see mm.py)
