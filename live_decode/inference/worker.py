"""The inference worker process: pull frames, localize with temporal context, write, publish.

Per loop: wait for a message, then drain whatever else is queued (up to ``max_batch`` frames) so
the network runs on batches when behind and on single frames when idle. Localizations are
appended to the run directory's files (flushed every batch) before they are published, so a
viewer or subscriber that drops messages never loses data on disk.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from live_decode.errors import LocalizationFileError
from live_decode.inference.compat import check_card
from live_decode.inference.engine import Localizer
from live_decode.inference.processor import BatchResult, LocSink, StreamProcessor
from live_decode.io.picasso import PicassoWriter
from live_decode.io.thunderstorm import ThunderstormWriter, read_thunderstorm_csv
from live_decode.messages import (
    EosMsg,
    ErrorMsg,
    FrameMsg,
    GapMsg,
    HeartbeatMsg,
    Message,
    WorkerStats,
)
from live_decode.transport.frames import FramePuller
from live_decode.transport.results import ResultPublisher

log = logging.getLogger("live_decode.inference.worker")

CSV_NAME, HDF5_NAME, WORKER_SUMMARY_NAME = "locs.csv", "locs.hdf5", "worker_summary.json"


@dataclass
class WorkerSummary:
    """Totals of one worker run, written as ``worker_summary.json``."""

    frames_received: int = 0
    frames_processed: int = 0
    localizations: int = 0
    dropped_upstream: int = 0
    gaps: int = 0
    rejected_messages: int = 0
    batches: int = 0
    first_frame: int | None = None
    last_frame: int | None = None
    mismatches: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        d.pop("latencies_ms")
        d["latency_ms_p50"] = float(np.nanpercentile(lat, 50))
        d["latency_ms_p99"] = float(np.nanpercentile(lat, 99))
        d["fps"] = self.frames_processed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return d


class InferenceWorker:
    """Runs until end of stream, ``stop()``, or ``idle_timeout_s`` without messages."""

    def __init__(
        self,
        localizer: Localizer,
        puller: FramePuller,
        publisher: ResultPublisher | None,
        run_dir: Path,
        *,
        max_batch: int = 32,
        override_mismatch: bool = False,
        idle_timeout_s: float | None = None,
        resume: bool = False,
    ) -> None:
        self.localizer = localizer
        self.puller = puller
        self.publisher = publisher
        self.run_dir = run_dir
        self.max_batch = max_batch
        self.override_mismatch = override_mismatch
        self.idle_timeout_s = idle_timeout_s
        self.processor = StreamProcessor(localizer)
        self.summary = WorkerSummary()
        self._stop = threading.Event()
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)  # (time, frames) for fps
        self._checked = False
        self.resume = resume
        # After a restart, frames already in the files are skipped so nothing is duplicated.
        self.skip_through = last_written_frame(run_dir / CSV_NAME) if resume else None

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ set-up on first frame
    def _open_sinks(self, first: FrameMsg) -> list[LocSink]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        h, w = (int(s) for s in first.pixels.shape)
        card = self.localizer.card
        csv = ThunderstormWriter(self.run_dir / CSV_NAME, resume=self.resume)
        hdf5 = PicassoWriter(
            self.run_dir / HDF5_NAME,
            width_px=w,
            height_px=h,
            pixel_size_nm=self.localizer.pixel_size_nm,
            with_z=self.localizer.scaling.is_3d,
            extra_info={"model": card.summary(), "camera": _camera_info(first)},
            resume=self.resume,
        )
        return [csv, hdf5]

    def _first_frame(self, frame: FrameMsg) -> None:
        problems = check_card(
            self.localizer.card, frame.camera, frame.pixels, self.override_mismatch
        )
        for p in problems:
            log.warning("model mismatch overridden: %s", p)
        self.summary.mismatches = problems
        self.processor.sinks = self._open_sinks(frame)
        self.summary.first_frame = frame.index
        self._checked = True

    # ------------------------------------------------------------------ loop
    def _drain(self, first: Message) -> list[Message]:
        msgs = [first]
        n_frames = int(isinstance(first, FrameMsg))
        while n_frames < self.max_batch and not isinstance(msgs[-1], EosMsg):
            nxt = self.puller.recv(timeout_ms=0)
            if nxt is None:
                break
            msgs.append(nxt)
            n_frames += isinstance(nxt, FrameMsg)
        return msgs

    def run(self) -> WorkerSummary:
        start = time.perf_counter()
        last_msg = time.perf_counter()
        try:
            while not self._stop.is_set():
                msg = self.puller.recv(timeout_ms=100)
                if msg is None:
                    if (
                        self.idle_timeout_s is not None
                        and time.perf_counter() - last_msg > self.idle_timeout_s
                    ):
                        log.warning("no frames for %.0f s: stopping", self.idle_timeout_s)
                        break
                    continue
                last_msg = time.perf_counter()
                msgs = self._drain(msg)
                if self._handle(msgs):
                    break
        finally:
            self.summary.elapsed_s = time.perf_counter() - start
            self.summary.rejected_messages = self.puller.rejected
            self.close()
        return self.summary

    def _handle(self, msgs: list[Message]) -> bool:
        """Process one drained batch; True at end of stream."""
        stream: list[Message] = []
        for m in msgs:
            if isinstance(m, FrameMsg):
                if self.skip_through is not None and m.index <= self.skip_through:
                    continue
                if not self._checked:
                    self._first_frame(m)
                self.summary.frames_received += 1
                stream.append(m)
            elif isinstance(m, GapMsg):
                self.summary.dropped_upstream += m.count
                self.summary.gaps += 1
                stream.append(m)
            elif isinstance(m, EosMsg):
                stream.append(m)
            elif isinstance(m, ErrorMsg):
                log.error("source reported %s: %s", m.code, m.message)
                if self.publisher is not None:
                    self.publisher.publish(m)
            elif isinstance(m, HeartbeatMsg):
                continue
        result = self.processor.process(stream)
        self._publish(result, queue_depth=len(msgs) - 1)
        if result.finished and self.publisher is not None:
            self.publisher.publish(EosMsg(last_index=self.summary.last_frame))
        return result.finished

    def _publish(self, result: BatchResult, queue_depth: int) -> None:
        if not result.stats:
            return
        now_ns = time.time_ns()
        s = self.summary
        s.batches += 1
        s.frames_processed += len(result.stats)
        s.localizations += len(result.locs)
        s.last_frame = result.stats[-1].frame
        lat = [(now_ns - ts) / 1e6 for ts in result.timestamps_ns]
        s.latencies_ms.extend(lat)
        t = time.perf_counter()
        self._recent.append((t, len(result.stats)))
        span = t - self._recent[0][0]
        frames = sum(n for _, n in list(self._recent)[1:])
        fps = frames / span if span > 0 else 0.0
        worker = WorkerStats(
            fps=fps,
            latency_ms=float(np.mean(lat)),
            queue_depth=queue_depth,
            dropped_upstream=s.dropped_upstream,
        )
        if self.publisher is not None:
            self.publisher.publish_batch(result.locs, result.stats, worker)

    def close(self) -> None:
        self.processor.close()
        if self.run_dir.is_dir():
            path = self.run_dir / WORKER_SUMMARY_NAME
            path.write_text(json.dumps(self.summary.to_dict(), indent=2) + "\n", encoding="utf-8")


def _camera_info(frame: FrameMsg) -> dict[str, object]:
    info = {k: v for k, v in asdict(frame.camera).items() if k != "extra"}
    return {**info, **{k: v for k, v in frame.camera.extra.items() if isinstance(v, str)}}


def last_written_frame(csv_path: Path) -> int | None:
    """The highest frame index in an existing localization CSV (None if none)."""
    if not csv_path.is_file():
        return None
    try:
        locs = read_thunderstorm_csv(csv_path)
    except LocalizationFileError:  # an empty file: nothing was written before the crash
        return None
    return int(locs["frame"].max()) if len(locs) else None
