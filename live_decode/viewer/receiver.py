"""Receiving results and preview frames off the GUI thread (no Qt).

A :class:`Receiver` owns one thread with a ZeroMQ poller over the results SUB socket (topics
``locs``, ``image`` and ``event``; the ``stats`` topic repeats what ``locs`` carries) and the
preview SUB socket. The thread decodes, accumulates the super-resolution image and the traces,
and keeps the latest preview frame and network image (a Deep-STORM worker's summed density);
the GUI reads thread-safe snapshots on its timers and never touches a socket. Subscribing is
all it takes to join a run already going, on this host or another one (with CURVE client
keys); what was published before the subscription is not seen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import zmq

from live_decode.config import QualityConfig
from live_decode.endpoints import RunEndpoints
from live_decode.errors import LiveDecodeError, error_if_none
from live_decode.messages import (
    EosMsg,
    ErrorMsg,
    EventMsg,
    FrameMsg,
    FrameStats,
    GapMsg,
    ImageMsg,
    Localizations,
    LocsMsg,
    WorkerStats,
    empty_locs,
)
from live_decode.transport.curve import ClientKeys
from live_decode.transport.preview import PreviewSubscriber
from live_decode.transport.results import ResultSubscriber
from live_decode.transport.sockets import Context, check_endpoints
from live_decode.viewer.accumulator import RenderSettings, SuperResAccumulator
from live_decode.viewer.density import DensityTrace, Health, LaserTrace, RateMeter
from live_decode.viewer.quality_view import LiveQuality, QualityTraces, mismatch_banner
from live_decode.viewer.run_files import RecordedRun
from live_decode.viewer.snapshots import (
    Detections,
    FrameView,
    NetworkImage,
    PreviewFrame,
    RenderSnapshot,
    Traces,
)

log = logging.getLogger("live_decode.viewer.receiver")

STALL_S: Final = 2.0
"""No message for this long: the stream shows as stalled."""
MISMATCH_CODE: Final = "model_mismatch"
MISMATCH_CLEARED: Final = "model_mismatch_cleared"


@dataclass
class _Counters:
    messages: int = 0
    locs: int = 0
    previews: int = 0
    errors: int = 0
    last_error: str = ""
    events: int = 0
    last_event: str = ""
    mismatch: str = ""  # the model-mismatch banner while the alarm is raised
    gaps: int = 0
    receiver_errors: int = 0
    eos: bool = False
    last_message_s: float | None = None
    worker: WorkerStats | None = None
    locs_rate: RateMeter = field(default_factory=RateMeter)
    frame_rate: RateMeter = field(default_factory=RateMeter)


class Receiver:
    """Background receiver; see the module docstring.

    Parameters
    ----------
    endpoints
        Results (required) and preview endpoints; ``control`` is not used here. None: no
        sockets, the data come from :meth:`ingest` and :meth:`show_frame` (a recorded run).
    curve
        CURVE client keys, for a run on another host that binds with server keys.
    settings
        Initial super-resolution rendering.
    context
        ZeroMQ context to use; by default the receiver makes its own and terminates it on stop.
    rcvhwm
        Results messages queued before the publisher drops for this viewer (counted as missed).
    poll_ms
        Poll timeout: how quickly a stop request or a settings change is noticed.
    overlay_frames
        Newest frames whose localizations are kept for the raw-frame overlay.
    preview_frames, preview_bytes
        Preview frames kept (at most this many, and this many bytes, at least two) so the raw
        panel can show the newest one whose localizations have arrived: those need frame t+1
        and the worker, so they come after the next preview frames (see ``_keep_preview``).
    draw_budget_s
        Drawing time between two looks at the sockets. Receiving never waits for drawing: when
        drawing is slower than the stream (Gaussian rendering on a busy machine), localizations
        are kept and drawn later (``Health.draw_backlog``), none is dropped.
    quality
        Live quality settings (NeNA/FRC cadence, FRC pixel, drift windows): the viewer computes
        NeNA, FRC and drift itself from the batches it receives (:mod:`.quality_view`).
    """

    def __init__(
        self,
        endpoints: RunEndpoints | None,
        *,
        curve: ClientKeys | None = None,
        settings: RenderSettings | None = None,
        context: Context | None = None,
        rcvhwm: int = 10_000,
        poll_ms: int = 20,
        overlay_frames: int = 64,
        preview_frames: int = 32,
        preview_bytes: int = 64 << 20,
        draw_budget_s: float = 0.03,
        quality: QualityConfig | None = None,
    ) -> None:
        if endpoints is not None:
            check_endpoints(endpoints)
        self.endpoints = endpoints
        self._curve = curve
        self._own_context = context is None
        self._context = context  # made on start() when not given
        self._rcvhwm = rcvhwm
        self._poll_ms = poll_ms
        self._draw_budget_s = draw_budget_s
        self._overlay_frames = overlay_frames
        self._preview_frames = max(2, preview_frames)
        self._preview_bytes = preview_bytes
        # Two locks, so the GUI reading a frame or a trace never waits for a batch being drawn:
        # _acc_lock guards the accumulator, _quality_lock the quality tracker (an update takes
        # a few 100 ms: the GUI reads the snapshot under _lock instead), _lock everything else.
        # Never hold two.
        self._lock = threading.Lock()
        self._acc_lock = threading.Lock()
        self._quality_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._startup_error: LiveDecodeError | None = None
        self._thread: threading.Thread | None = None
        # Written by the receiver thread under those locks; requests are taken under _lock.
        self._acc = SuperResAccumulator(settings, deferred=True)
        self._quality = LiveQuality(quality)
        self._quality_traces = self._quality.traces()
        self._density = DensityTrace()
        self._laser = LaserTrace()
        self._overlay: OrderedDict[int, Detections] = OrderedDict()
        self._frame: PreviewFrame | None = None
        self._previews: OrderedDict[int, PreviewFrame] = OrderedDict()  # by frame index
        self._counts = _Counters()
        self._missed = 0
        self._rejected_results = 0
        self._rejected_preview = 0
        self._pending_settings: RenderSettings | None = None
        self._pending_reset = False
        # The newest network image (each message carries the whole sum) and what it was at the
        # last reset: shown is the difference, so a reset starts the image afresh.
        self._image: ImageMsg | None = None
        self._image_at_reset: ImageMsg | None = None
        self._image_version = 0
        self._image_shown: NetworkImage | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 5.0) -> None:
        """Open the sockets on the receiver thread and start receiving.

        Raises
        ------
        LiveDecodeError
            If a socket cannot be opened (bad address, bad keys); the message says which.
        """
        if self._thread is not None:
            raise RuntimeError("this Receiver was already started; make a new one")
        if self._context is None and self.endpoints is not None:
            self._context = zmq.Context()
        self._thread = threading.Thread(target=self._run, name="viewer-receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise LiveDecodeError(f"the receiver did not start within {timeout_s} s")
        if self._startup_error is not None:
            self._thread.join()
            self._close_context()
            raise self._startup_error

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop the thread (sockets close on it) and terminate an own context; idempotent.

        Returns False if the thread did not end within ``timeout_s`` (then the context is left
        for the interpreter to clean up, rather than hanging on ``term``).
        """
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("receiver thread still running after %.1f s", timeout_s)
                return False
        self._close_context()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def context(self) -> Context | None:
        """The ZeroMQ context (None before :meth:`start` when the receiver makes its own)."""
        return self._context

    def _close_context(self) -> None:
        if self._own_context and self._context is not None and not self._context.closed:
            self._context.term()

    # ------------------------------------------------------------------ GUI side: requests
    def update_settings(self, settings: RenderSettings) -> None:
        """Re-render with new settings (pixel size, Gaussian, filters) on the receiver thread."""
        with self._lock:
            self._pending_settings = settings

    def reset(self) -> None:
        """Clear the super-resolution image, the network image and the kept localizations."""
        with self._lock:
            self._pending_reset = True
            self._image_at_reset = self._image
            self._image_shown = None
            self._image_version += 1

    def load_recorded(self, run: RecordedRun) -> None:
        """Show a finished run read from its files (:func:`~.run_files.load_run`): its last raw
        frame (or its field of view), quality traces, localizations, laser trace and network
        image, the stream marked as ended."""
        if run.raw is not None:
            self.show_frame(run.raw)
        elif run.frame_shape is not None:
            h, w = run.frame_shape
            self.set_field_of_view(h * run.pixel_size_nm, w * run.pixel_size_nm)
        self.load_quality(run.run_dir)  # quality.csv / drift.csv; else computed from the locs
        self.ingest(run.locs, run.stats, laser=(run.laser_frames, run.laser_mw), ended=True)
        if run.network_image is not None:
            pixels, pixel_nm, frames = run.network_image
            n = len(run.stats) if frames is None else frames
            self.show_network_image(
                pixels, pixel_nm, frames=n, last_frame=max(len(run.stats) - 1, 0)
            )

    def show_network_image(
        self, pixels: npt.ArrayLike, pixel_size_nm: float, frames: int, last_frame: int
    ) -> None:
        """Use ``pixels`` as the network image, as if received (a recorded run's sr_image.tif)."""
        image = np.ascontiguousarray(pixels, dtype=np.float32)
        self._take_image(ImageMsg(image, float(pixel_size_nm), int(frames), int(last_frame), -1))

    def ingest(
        self,
        locs: Localizations,
        stats: list[FrameStats],
        *,
        laser: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
        ended: bool = False,
    ) -> None:
        """Add localizations, frame stats and (frames, mW) laser readings, as if received.

        For a recorded run (``endpoints`` None); ``ended`` marks the stream as ended.
        """
        self._absorb(locs, stats, None, [EosMsg()] if ended else [], len(stats))
        if laser is not None:
            with self._lock:
                self._laser.extend(*laser)

    def show_frame(self, frame: PreviewFrame) -> None:
        """Use ``frame`` as the latest preview frame (a recorded run's raw frame)."""
        with self._lock:
            self._frame = frame
            self._keep_preview(frame)
        h, w = frame.pixels.shape
        self.set_field_of_view(h * frame.pixel_size_nm, w * frame.pixel_size_nm)

    def set_field_of_view(self, height_nm: float, width_nm: float) -> None:
        """The camera's field of view (nm): the canvas covers it; the quality tracker starts."""
        with self._acc_lock:
            self._acc.set_field_of_view(height_nm, width_nm)
        with self._quality_lock:
            self._quality.set_field_of_view(height_nm, width_nm)
            traces = self._quality.traces()
        with self._lock:
            self._quality_traces = traces

    def load_quality(self, run_dir: Path) -> bool:
        """Show a finished run's ``quality.csv`` / ``drift.csv`` (False if it has neither)."""
        with self._quality_lock:
            loaded = self._quality.load(run_dir)
            drift, traces = self._quality.drift, self._quality.traces()
        with self._lock:
            self._quality_traces = traces
        if loaded:
            with self._acc_lock:
                self._acc.set_drift(drift)
        return loaded

    def record_laser(self, power_mw: float) -> None:
        """Add a laser reading (from the control link) at the newest frame seen."""
        with self._lock:
            self._laser.add(float(self._density.latest_frame or 0), power_mw)

    # ------------------------------------------------------------------ GUI side: snapshots
    def latest_frame(self) -> PreviewFrame | None:
        with self._lock:
            return self._frame

    def frame_to_show(self) -> FrameView | None:
        """The newest kept preview frame whose results arrived, with its localizations.

        Falls back to the latest preview frame (``localized`` False, no detections) when none of
        the kept frames has its results yet: at the start, or while the worker is away.
        """
        with self._lock:
            if self._frame is None:
                return None
            newest = self._density.latest_frame
            if newest is not None:
                for index in reversed(self._previews):
                    # Older than the overlay window: its rows are gone, so do not pretend.
                    if newest - self._overlay_frames < index <= newest:
                        frame = self._previews[index]
                        return FrameView(frame, self._overlay.get(index), localized=True)
            return FrameView(self._frame, None, localized=False)

    def detections(self, frame: int) -> Detections | None:
        """The localizations of ``frame``, if it is among the last ``overlay_frames`` received."""
        with self._lock:
            return self._overlay.get(frame)

    @property
    def settings(self) -> RenderSettings:
        with self._lock:
            pending = self._pending_settings
        return pending or self._acc.settings

    def render(
        self,
        rows: tuple[float, float] | None = None,
        cols: tuple[float, float] | None = None,
        max_side: int = 2048,
        *,
        wait: bool = True,
    ) -> RenderSnapshot | None:
        """A region of the super-resolution image (render pixels), binned to ≤ ``max_side``.

        With ``wait=False`` it returns None instead of waiting while a batch is being drawn
        (the GUI then keeps its image and asks again on its next tick).
        """
        if not self._acc_lock.acquire(blocking=wait):
            return None
        try:
            acc = self._acc
            return RenderSnapshot(
                view=acc.view(rows, cols, max_side),
                settings=acc.settings,
                canvas_shape=acc.shape,
                version=acc.version,
                drawn=acc.drawn,
                kept=acc.kept,
                not_kept=acc.not_kept,
            )
        finally:
            self._acc_lock.release()

    def full_image(self) -> tuple[npt.NDArray[np.float32], RenderSettings]:
        """A copy of the whole render at full resolution (for export)."""
        with self._acc_lock:
            return np.array(self._acc.image, np.float32), self._acc.settings

    def network_image(self) -> NetworkImage | None:
        """The network's own super-resolution image since the last reset (None: none came)."""
        with self._lock:
            if self._image_shown is not None or self._image is None:
                return self._image_shown
            msg, base, version = self._image, self._image_at_reset, self._image_version
        pixels, frames = msg.pixels, msg.frames
        if base is not None and base.pixels.shape == pixels.shape and base.frames <= frames:
            pixels, frames = pixels - base.pixels, frames - base.frames
        shown = NetworkImage(pixels, msg.pixel_size_nm, frames, msg.last_frame, version)
        with self._lock:
            if version == self._image_version:
                self._image_shown = shown
        return shown

    def quality(self) -> QualityTraces:
        """NeNA / FRC traces and the drift estimate at the last quality update (a new object at
        each update: compare by identity to know whether to redraw)."""
        with self._lock:
            return self._quality_traces

    def mismatch_alarm(self) -> str:
        """The model-mismatch banner text while the worker's alarm is raised, else ""."""
        with self._lock:
            return self._counts.mismatch

    def render_version(self) -> int:
        return self._acc.version  # one attribute read: no lock needed

    def traces(self) -> Traces:
        with self._lock:
            return Traces(
                frames=self._density.frames.copy(),
                density_per_um2=self._density.density_per_um2.copy(),
                smoothed=self._density.smoothed(),
                laser_frames=self._laser.frames.copy(),
                laser_mw=self._laser.power_mw.copy(),
            )

    def health(self) -> Health:
        with self._lock:
            c, w = self._counts, self._counts.worker
            return Health(
                worker_fps=w.fps if w else float("nan"),
                latency_ms=w.latency_ms if w else float("nan"),
                queue_depth=w.queue_depth if w else 0,
                dropped_source=w.dropped_upstream if w else 0,
                missed_transport=self._missed,
                rejected=self._rejected_results + self._rejected_preview,
                errors=c.errors,
                last_error=c.last_error,
                events=c.events,
                last_event=c.last_event,
                messages=c.messages,
                locs_received=c.locs,
                locs_per_s=c.locs_rate.rate(),
                frames_per_s=c.frame_rate.rate(),
                stream=self._stream_state(),
                receiver_errors=c.receiver_errors,
                draw_backlog=self._acc.pending,
            )

    def latest_result_frame(self) -> int | None:
        """The newest frame index whose stats arrived."""
        with self._lock:
            return self._density.latest_frame

    def _stream_state(self) -> str:
        last = self._counts.last_message_s
        if last is None:
            return "waiting"
        if self._counts.eos:
            return "ended"
        return "stalled" if time.monotonic() - last > STALL_S else "live"

    # ------------------------------------------------------------------ receiver thread
    def _run(self) -> None:
        if self.endpoints is None:
            self._run_without_sockets()
            return
        context = error_if_none(self._context, "start() makes the context before the thread")
        try:
            results = ResultSubscriber(
                context,
                self.endpoints.results,
                topics=("locs", "image", "event"),
                rcvhwm=self._rcvhwm,
                curve=self._curve,
            )
        except LiveDecodeError as exc:
            self._startup_error = exc
            self._ready.set()
            return
        preview: PreviewSubscriber | None = None
        try:
            if self.endpoints.preview is not None:
                preview = PreviewSubscriber(context, self.endpoints.preview, curve=self._curve)
        except LiveDecodeError as exc:
            results.close()
            self._startup_error = exc
            self._ready.set()
            return
        poller = zmq.Poller()
        poller.register(results.socket, zmq.POLLIN)
        if preview is not None:
            poller.register(preview.socket, zmq.POLLIN)
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    self._apply_requests()
                    idle = self._acc.pending == 0  # with drawing left, only peek at sockets
                    events = dict(poller.poll(self._poll_ms if idle else 0))
                    if preview is not None and preview.socket in events:
                        self._take_preview(preview)
                    if results.socket in events:
                        self._take_results(results)
                    self._draw_pending(self._draw_budget_s)
                except Exception as exc:  # counted and shown; one bad batch never ends the view
                    with self._lock:
                        self._counts.receiver_errors += 1
                        self._counts.last_error = f"viewer: {exc!r}"
                    log.exception("receiver: failed to handle a message")
        finally:
            results.close()
            if preview is not None:
                preview.close()

    def _run_without_sockets(self) -> None:
        """A recorded run: only settings changes and drawing, no sockets."""
        self._ready.set()
        while not self._stop.wait(self._poll_ms / 1000 if self._acc.pending == 0 else 0):
            try:
                self._apply_requests()
                self._draw_pending(self._draw_budget_s)
            except Exception as exc:  # counted and shown, as for received batches
                with self._lock:
                    self._counts.receiver_errors += 1
                    self._counts.last_error = f"viewer: {exc!r}"
                log.exception("receiver: failed to draw")

    def _apply_requests(self) -> None:
        with self._lock:
            settings, self._pending_settings = self._pending_settings, None
            reset, self._pending_reset = self._pending_reset, False
            if reset:
                self._overlay.clear()
        if reset:
            with self._acc_lock:
                self._acc.reset()
        if settings is not None and settings != self._acc.settings:
            try:
                with self._acc_lock:
                    self._acc.update(settings)  # clears; _draw_pending re-renders in slices
            except ValueError as exc:
                with self._lock:
                    self._counts.last_error = f"viewer: {exc}"
                log.warning("render settings refused: %s", exc)

    def _draw_pending(self, budget_s: float) -> None:
        """Draw kept localizations not drawn yet, in slices, for at most ``budget_s``.

        Slices are small enough (a few ms) that the GUI never waits long for the lock, and the
        budget bounds how long the sockets go unread.
        """
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline:
            with self._acc_lock:
                if self._acc.pending == 0:
                    return
                chunk = 4096 if self._acc.settings.gaussian else 65536
                self._acc.catch_up(max_rows=chunk)

    def _take_preview(self, preview: PreviewSubscriber) -> None:
        latest: FrameMsg | None = None
        while (msg := preview.latest(timeout_ms=0)) is not None:
            latest = msg
        if latest is None:
            return
        pixels = np.array(latest.pixels)  # own the memory: the ZeroMQ buffer is reused
        px = latest.camera.pixel_size_nm
        with self._lock:
            self._counts.previews += 1
            frame = PreviewFrame(latest.index, pixels, px, self._counts.previews)
            self._frame = frame
            self._keep_preview(frame)
            self._rejected_preview = preview.rejected
        h, w = pixels.shape
        self.set_field_of_view(h * px, w * px)

    def _keep_preview(self, frame: PreviewFrame) -> None:
        """Add to the kept previews (under ``_lock``); a frame index going back is a new run.

        Kept: the newest frame whose results arrived (older ones will not be shown again) and
        the frames after it. When they are too many, the one closest to its older neighbour
        goes (never the oldest or the newest), so a worker lagging far behind still finds kept
        frames spread over its whole lag instead of only the last few.
        """
        if self._previews and frame.index <= next(reversed(self._previews)):
            self._previews.clear()
        self._previews[frame.index] = frame
        newest = self._density.latest_frame
        if newest is not None:
            localized = [index for index in self._previews if index <= newest]
            for index in localized[:-1]:
                del self._previews[index]
        limit = max(
            2, min(self._preview_frames, self._preview_bytes // max(1, frame.pixels.nbytes))
        )
        while len(self._previews) > limit:
            keys = list(self._previews)
            gaps = np.diff(keys)[:-1]  # gap before each of keys[1:-1]
            del self._previews[keys[1 + int(np.argmin(gaps))]]

    def _take_results(self, results: ResultSubscriber, budget_s: float = 0.05) -> None:
        """Drain the results socket (at most ``budget_s``), then update the models once."""
        batches: list[Localizations] = []
        stats: list[FrameStats] = []
        worker: WorkerStats | None = None
        image: ImageMsg | None = None
        events: list[ErrorMsg | EventMsg | EosMsg | GapMsg] = []
        n = 0
        deadline = time.monotonic() + budget_s
        while time.monotonic() < deadline and (msg := results.recv(timeout_ms=0)) is not None:
            n += 1
            if isinstance(msg, LocsMsg):
                if len(msg.locs):
                    batches.append(msg.locs)
                stats.extend(msg.frame_stats)
                worker = msg.worker
            elif isinstance(msg, ImageMsg):
                image = msg  # each carries the whole sum: only the newest matters
            elif isinstance(msg, ErrorMsg | EventMsg | EosMsg | GapMsg):
                events.append(msg)
        if image is not None:
            self._take_image(replace(image, pixels=np.array(image.pixels)))  # own the memory
        self._absorb(_concat(batches), stats, worker, events, n)
        with self._lock:
            self._missed = results.missed
            self._rejected_results = results.rejected

    def _take_image(self, msg: ImageMsg) -> None:
        """Keep the newest network image; a reset's baseline goes with a new run (another
        ``run_id``, fewer frames or another shape)."""
        with self._lock:
            base = self._image_at_reset
            if base is not None and (
                msg.run_id != base.run_id
                or msg.frames < base.frames
                or msg.pixels.shape != base.pixels.shape
            ):
                self._image_at_reset = None
            self._image = msg
            self._image_shown = None
            self._image_version += 1

    def _absorb(
        self,
        locs: Localizations,
        stats: list[FrameStats],
        worker: WorkerStats | None,
        events: list[ErrorMsg | EventMsg | EosMsg | GapMsg],
        n: int,
    ) -> None:
        """Update the models with ``n`` messages' worth of decoded results."""
        overlay = self._overlay_rows(locs)
        now = time.monotonic()
        with self._acc_lock:
            self._acc.add(locs)
        with self._quality_lock:
            new_row = self._quality.add(locs, stats[-1].frame if stats else None)
            drift = self._quality.drift if new_row else None
            traces = self._quality.traces() if new_row else None
        if traces is not None:
            with self._lock:
                self._quality_traces = traces
        if new_row:
            with self._acc_lock:
                self._acc.set_drift(drift)  # re-renders only when drift-corrected
        with self._lock:
            c = self._counts
            c.messages += n
            c.locs += len(locs)
            c.last_message_s = now if n else c.last_message_s
            c.locs_rate.add(len(locs), now)
            c.frame_rate.add(len(stats), now)
            if worker is not None:
                c.worker = worker
            if n and not any(isinstance(e, EosMsg) for e in events):
                c.eos = False
            for event in events:
                if isinstance(event, ErrorMsg):
                    c.errors += 1
                    c.last_error = f"{event.code}: {event.message}"
                    if event.code == MISMATCH_CODE:
                        c.mismatch = mismatch_banner(event.message)
                elif isinstance(event, EventMsg):  # a notice (worker, density loop): no error
                    c.events += 1
                    c.last_event = f"{event.source} {event.name}: {event.message}"
                    if event.name == MISMATCH_CLEARED:
                        c.mismatch = ""
                elif isinstance(event, EosMsg):
                    c.eos = True
                else:
                    c.gaps += event.count
            self._density.add(stats)
            for frame, det in overlay.items():
                self._overlay[frame] = det
            while len(self._overlay) > self._overlay_frames:
                self._overlay.popitem(last=False)

    def _overlay_rows(self, locs: Localizations) -> dict[int, Detections]:
        """The rows of the newest ``overlay_frames`` frames of a batch, split by frame."""
        if len(locs) == 0:
            return {}
        frames = locs["frame"]
        newest = int(frames.max())
        recent = locs[frames > newest - self._overlay_frames]
        order = np.argsort(recent["frame"], kind="stable")
        recent = recent[order]
        keys, starts = np.unique(recent["frame"], return_index=True)
        out: dict[int, Detections] = {}
        for key, rows in zip(keys, np.split(recent, starts[1:]), strict=True):
            out[int(key)] = Detections(
                frame=int(key),
                x_nm=rows["x_nm"].astype(np.float32),
                y_nm=rows["y_nm"].astype(np.float32),
                prob=rows["prob"].astype(np.float32),
                sigma_nm=np.maximum(rows["sigma_x_nm"], rows["sigma_y_nm"]).astype(np.float32),
            )
        return out


def _concat(batches: list[Localizations]) -> Localizations:
    if not batches:
        return empty_locs()
    return batches[0] if len(batches) == 1 else np.concatenate(batches)
