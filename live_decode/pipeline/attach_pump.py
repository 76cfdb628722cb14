"""The pump of an attachment: MDA frames → the worker, on a thread of the user's process.

:class:`FramePump` does for an :class:`~live_decode.sources.mda.MDAStream` what
:class:`~live_decode.sources.runner.SourceRunner` does for a source process: push each frame
without waiting (a full queue drops and counts; gaps precede the next frame), offer previews,
tick the density controller, answer the control socket. Unlike the runner it never blocks on
the stream: between MDAs it keeps answering control requests and sends heartbeats, so the
worker does not take the pause for an idle timeout. It also keeps ``mda_frames.csv``: what the
MDA said about every frame read.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from live_decode.control import ControlLoop
from live_decode.control.loop import ActuatorSafetyError
from live_decode.sources.mda import MDAFrameInfo, MDAStream
from live_decode.sources.runner import SourceSummary
from live_decode.transport.control import ControlServer
from live_decode.transport.frames import FramePusher
from live_decode.transport.preview import PreviewPublisher

log = logging.getLogger("live_decode.pipeline.attach")

FRAMES_LOG_NAME = "mda_frames.csv"
FRAMES_LOG_COLUMNS = (
    "frame", "sequence", "event_index", "runner_time_ms", "timestamp_ns", "exposure_ms",
    "camera", "sent",
)  # fmt: skip
HEARTBEAT_S = 1.0  # while no MDA runs, the worker is kept from its idle timeout
POLL_S = 0.05
EOS_WAIT_S = 30.0


class FramePump:
    """Moves an :class:`MDAStream`'s frames to the worker until the stream ends.

    Owns the sockets it is given (closed by :meth:`close`) and ``mda_frames.csv`` in
    ``run_dir``. ``worker_alive`` tells whether end of stream is still worth waiting for;
    ``on_failure(reason)`` is called once if the pump cannot go on (the attachment then
    cancels the MDA).
    """

    def __init__(
        self,
        stream: MDAStream,
        pusher: FramePusher,
        run_dir: Path,
        *,
        worker_alive: Callable[[], bool],
        on_failure: Callable[[str], None],
        preview: PreviewPublisher | None = None,
        control: ControlServer | None = None,
        loop: ControlLoop | None = None,
    ) -> None:
        self.stream = stream
        self.pusher = pusher
        self.preview = preview
        self.control = control
        self.loop = loop
        self.summary = SourceSummary()
        self.eos_sent = threading.Event()
        """Set once the pump has finished (end of stream sent, or given up)."""
        self._worker_alive = worker_alive
        self._on_failure = on_failure
        self._log_path = run_dir / FRAMES_LOG_NAME
        self._log = self._log_path.open("w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._log)
        self._csv.writerow(FRAMES_LOG_COLUMNS)

    def run(self) -> None:
        """The pump thread's body: until the stream ends, then end of stream to the worker."""
        stream, pusher = self.stream, self.pusher
        last_sent = time.monotonic()
        last_index: int | None = None
        try:
            while True:
                frame = stream.poll(POLL_S)
                if frame is None:
                    self._serve_control()
                    if stream.ended:
                        break
                    if time.monotonic() - last_sent > HEARTBEAT_S:
                        pusher.send_heartbeat()
                        last_sent = time.monotonic()
                    continue
                self.summary.frames_read += 1
                last_index = frame.index
                for gap in stream.take_gaps():
                    pusher.report_gap(gap.first, gap.count)
                cam = stream.camera
                sent = pusher.send_frame(
                    frame.pixels, index=frame.index, timestamp_ns=frame.timestamp_ns, camera=cam
                )
                last_sent = time.monotonic()
                self.summary.frames_sent += int(sent)
                if self.preview is not None:
                    self.preview.offer(
                        frame.pixels, index=frame.index, timestamp_ns=frame.timestamp_ns, camera=cam
                    )
                self._log_frame(stream.last_info, sent)
                if self.loop is not None:
                    self.loop.on_tick(frame.index)
                self._serve_control()
        except ActuatorSafetyError as exc:
            self._on_failure(str(exc))
        except Exception as exc:  # the stream must end with a reason, never silently
            log.exception("the attachment's frame pump failed")
            self._on_failure(f"the frame pump failed: {type(exc).__name__}: {exc}")
            pusher.send_error("source_failed", f"{type(exc).__name__}: {exc}")
        finally:
            for gap in stream.take_gaps():  # frames dropped after the last one read
                pusher.report_gap(gap.first, gap.count)
            self.summary.frames_dropped = pusher.frames_dropped
            self.summary.frames_lost_upstream = pusher.frames_lost_upstream
            self.summary.eos_sent = self._send_eos(last_index)
            self.summary.gaps_sent = pusher.gaps_sent
            self._log.flush()
            self.eos_sent.set()

    def _serve_control(self) -> None:
        if self.control is not None and self.control.serve_once(0):
            self.summary.control_requests += 1

    def _send_eos(self, last_index: int | None) -> bool:
        deadline = time.monotonic() + EOS_WAIT_S
        sent = self.pusher.send_eos(last_index, timeout_ms=500)
        while not sent and self._worker_alive() and time.monotonic() < deadline:
            sent = self.pusher.send_eos(last_index, timeout_ms=500)
        if not sent:
            log.warning("the end of stream was not delivered: is the worker running?")
        return sent

    def _log_frame(self, info: MDAFrameInfo | None, sent: bool) -> None:
        if info is None:
            return
        self._csv.writerow(
            [info.index, info.sequence, json.dumps(dict(info.event_index), sort_keys=True),
             f"{info.runner_time_ms:.3f}", info.timestamp_ns, f"{info.exposure_ms:g}",
             info.camera, int(sent)]
        )  # fmt: skip

    def close(self) -> None:
        """Close the sockets and the frame log (after :meth:`run` returned). Idempotent."""
        for end in (self.control, self.preview):
            if end is not None:
                end.close()
        self.control = self.preview = None
        self.pusher.close(linger_ms=0)
        if not self._log.closed:
            self._log.close()
