"""The run's live quality, beside the worker: a thread of the supervisor on the results channel.

It subscribes to the ``locs`` topic (the worker publishes every batch; a slow subscriber loses
messages at the publisher, never slows it, and the loss is counted), feeds a
:class:`~live_decode.quality.tracker.QualityTracker` and keeps the latest NeNA / FRC / drift for
the supervisor (auto-stop) and the summary. The field of view comes from the config for the
simulated microscope, else from the first preview frame (replay, Micro-Manager).
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import zmq

from live_decode.config import Config, SimulatedSourceConfig
from live_decode.errors import ProtocolError
from live_decode.messages import Localizations, LocsMsg
from live_decode.quality.tracker import QualityRow, QualityTracker
from live_decode.transport.preview import PreviewSubscriber
from live_decode.transport.results import ResultSubscriber

log = logging.getLogger("live_decode.pipeline.quality_monitor")
MAX_BUFFERED_BATCHES = 2000
"""Batches kept while the field of view is still unknown (no preview yet)."""


class QualityMonitor:
    """NeNA, FRC and drift of the localizations the worker publishes, in a thread."""

    def __init__(self, cfg: Config, results_endpoint: str, preview_endpoint: str | None) -> None:
        self.cfg = cfg
        self.results_endpoint = results_endpoint
        self.preview_endpoint = preview_endpoint
        self.tracker: QualityTracker | None = None
        self.latest: QualityRow | None = None
        self.missed = 0
        self.errors = 0
        self._buffer: list[tuple[Localizations, int]] = []
        self._stop = threading.Event()
        self._drain = threading.Event()  # finish: take what is still queued, then stop
        self._lock = threading.Lock()
        if isinstance(cfg.source, SimulatedSourceConfig):
            h, w = cfg.microscope.fov_px
            px = cfg.camera.pixel_size_nm
            self.tracker = QualityTracker((h * px, w * px), cfg.quality)
        self._thread = threading.Thread(target=self._run, name="quality-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def frc_nm(self) -> float | None:
        row = self.latest
        return row.frc_nm if row is not None and math.isfinite(row.frc_nm) else None

    def _run(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sub = ResultSubscriber(ctx, self.results_endpoint, topics=("locs",))
        preview = None
        if self.tracker is None and self.preview_endpoint is not None:
            preview = PreviewSubscriber(ctx, self.preview_endpoint)
        try:
            while not self._stop.is_set():
                if self.tracker is None and preview is not None:
                    self._field_from_preview(preview)
                try:
                    msg = sub.recv(timeout_ms=300 if self._drain.is_set() else 100)
                except ProtocolError as exc:
                    self.errors += 1
                    log.warning("quality: bad results message: %s", exc)
                    continue
                if msg is None and self._drain.is_set():
                    break
                while msg is not None and not self._stop.is_set():
                    if isinstance(msg, LocsMsg):
                        self._absorb(msg)
                    msg = sub.recv(timeout_ms=0)
                self.missed = sub.missed
        finally:
            sub.close()
            if preview is not None:
                preview.close()
            ctx.term()

    def _field_from_preview(self, preview: PreviewSubscriber) -> None:
        try:
            frame = preview.latest(timeout_ms=0)
        except ProtocolError as exc:
            self.errors += 1
            log.warning("quality: bad preview message: %s", exc)
            return
        if frame is None:
            return
        h, w = (int(s) for s in frame.pixels.shape)
        px = frame.camera.pixel_size_nm
        with self._lock:
            self.tracker = QualityTracker((h * px, w * px), self.cfg.quality)
            for locs, last in self._buffer:
                self._feed(locs, last)
            self._buffer.clear()

    def _absorb(self, msg: LocsMsg) -> None:
        last = msg.frame_stats[-1].frame if msg.frame_stats else -1
        locs = msg.locs.copy()  # the message views a ZeroMQ buffer
        with self._lock:
            if self.tracker is None:
                if len(self._buffer) < MAX_BUFFERED_BATCHES:
                    self._buffer.append((locs, last))
                return
            self._feed(locs, last)

    def _feed(self, locs: Localizations, last: int) -> None:
        assert self.tracker is not None
        row = self.tracker.add(locs, last_frame=last)
        if row is not None:
            self.latest = row
            log.info(
                "quality at frame %d: NeNA %.1f nm, FRC %.1f nm, drift (%.1f, %.1f) nm",
                row.frame,
                row.nena_nm,
                row.frc_nm,
                row.drift_dx_nm,
                row.drift_dy_nm,
            )

    def finish(self, out: Path) -> dict[str, object]:
        """Stop the thread, compute the final row, write the files; the summary's fields."""
        self._drain.set()
        self._thread.join(timeout=30)
        self._stop.set()
        with self._lock:
            tracker = self.tracker
            if tracker is None or tracker.last_frame < 0:
                return {"quality": "no localizations reached the quality monitor"}
            row = tracker.finish()
            self.latest = row
            tracker.write(out)
            locs_csv = out / "locs.csv"
            if self.cfg.quality.drift_corrected_copy and locs_csv.is_file():
                tracker.write_corrected_copy(out, locs_csv)
        return {
            "nena_nm": row.nena_nm,
            "frc_nm": row.frc_nm,
            "quality_at_frame": row.frame,
            "quality_at_s": row.elapsed_s,
            "quality_localizations": row.localizations,
            "drift_nm_at_end": [_finite_or_none(row.drift_dx_nm), _finite_or_none(row.drift_dy_nm)],
            "quality_locs_batches_missed": self.missed,
        }


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
