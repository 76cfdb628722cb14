"""The inference worker process: pull frames, localize with temporal context, write, publish.

Per loop: wait for a message, then drain whatever else is queued (up to ``max_batch`` frames) so
the network runs on batches when behind and on single frames when idle. Localizations are
appended to the run directory's files (flushed every batch) before they are published, so a
viewer or subscriber that drops messages never loses data on disk.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import h5py
import numpy as np

from live_decode.config import Config
from live_decode.errors import LocalizationFileError, ModelCardError
from live_decode.inference.compat import check_compatible, check_frame, refuse
from live_decode.inference.door import DEFAULT_DOOR_LIMITS, DoorLimits, FrameDoor
from live_decode.inference.mismatch_watch import MismatchWatch
from live_decode.inference.network_image import NetworkImageKeeper
from live_decode.inference.processor import BatchResult, LocSink, StreamProcessor
from live_decode.io.formats import write_extra_formats
from live_decode.io.picasso import PicassoWriter
from live_decode.io.thunderstorm import ThunderstormWriter, read_thunderstorm_csv
from live_decode.messages import (
    MODEL_REFUSED,
    WORKER_EVENTS,
    WORKER_READY,
    EosMsg,
    ErrorMsg,
    EventMsg,
    FrameMsg,
    GapMsg,
    HeartbeatMsg,
    HelloMsg,
    LocsMsg,
    Message,
    StatsMsg,
    WorkerStats,
)
from live_decode.model.seam import NetworkLocalizer
from live_decode.running_stats import LogHistogram
from live_decode.strict_json import write_json
from live_decode.transport.frames import FramePuller
from live_decode.transport.results import ResultPublisher

log = logging.getLogger("live_decode.inference.worker")

CSV_NAME, HDF5_NAME, WORKER_SUMMARY_NAME = "locs.csv", "locs.hdf5", "worker_summary.json"
READY_EVERY_S = 0.5  # WORKER_READY is repeated this often until the first frame
REFUSAL_REPEATS = 8  # MODEL_REFUSED is published this many times, READY_EVERY_S / 2 apart
END_OF_STREAM = "end of stream"
"""``InferenceWorker.end_reason`` when the stream ended with its ``eos`` message."""
MISMATCH_NAME = "mismatch.json"


@dataclass
class WorkerSummary:
    """Totals of one worker run, written as ``worker_summary.json``."""

    frames_received: int = 0
    frames_processed: int = 0
    localizations: int = 0
    dropped_upstream: int = 0
    gaps: int = 0
    rejected_messages: int = 0
    frames_lost_on_restart: int = 0
    resumed: int = 0
    batches: int = 0
    first_frame: int | None = None
    last_frame: int | None = None
    mismatches: list[str] = field(default_factory=list)
    run_id: int | None = None  # the first worker's start (ns): kept by a worker that resumes
    # Frame latencies (ms) as a fixed-size histogram: memory stays flat over a day at 1 kHz.
    latency_ms: LogHistogram = field(default_factory=LogHistogram)
    elapsed_s: float = 0.0

    def latency_percentiles_ms(self) -> tuple[float, float]:
        """(p50, p99) of the frame latencies, ms, within ±1.2 % (NaN before the first frame)."""
        return self.latency_ms.quantile(0.5), self.latency_ms.quantile(0.99)

    def to_dict(self) -> dict[str, object]:
        """JSON-able totals, with the latency p50, p99 and max (ms; null before any frame)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "latency_ms"}
        p50, p99 = self.latency_percentiles_ms()
        worst = self.latency_ms.max if self.latency_ms.count else math.nan
        d["latency_ms_p50"], d["latency_ms_p99"] = _or_none(p50), _or_none(p99)
        d["latency_ms_max"] = _or_none(worst)
        d["fps"] = self.frames_processed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return d

    @classmethod
    def load(cls, path: Path) -> WorkerSummary | None:
        """The totals a previous worker of this run left in ``path`` (None if unreadable)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        names = {f.name for f in fields(cls)} - {"latency_ms"}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError:
            return None


class InferenceWorker:
    """Runs until end of stream, ``stop()``, or ``idle_timeout_s`` without messages."""

    def __init__(
        self,
        localizer: NetworkLocalizer,
        puller: FramePuller,
        publisher: ResultPublisher | None,
        run_dir: Path,
        *,
        max_batch: int = 32,
        override_mismatch: bool = False,
        idle_timeout_s: float | None = None,
        resume: bool = False,
        config: Config | None = None,
        config_name: str | None = None,
        door_limits: DoorLimits = DEFAULT_DOOR_LIMITS,
        mismatch: MismatchWatch | None = None,
        image_every_s: float = 0.5,
    ) -> None:
        self.localizer = localizer
        self.mismatch = mismatch  # the model-mismatch alarm's thread (quality), or None
        self.config = config  # the run's config: PSF, z range, temporal context are checked
        self.config_name = config_name
        self.puller = puller
        self.publisher = publisher
        self.run_dir = run_dir
        self.max_batch = max_batch
        self.override_mismatch = override_mismatch
        self.idle_timeout_s = idle_timeout_s
        self.processor = StreamProcessor(localizer)
        self.summary = WorkerSummary()
        self._stop = threading.Event()
        self._ready_at: float | None = None  # when WORKER_READY was last published
        self.end_reason = "not started"  # why run() returned: END_OF_STREAM, stopped, idle ...
        self._recent: deque[tuple[float, int]] = deque(maxlen=64)  # (time, frames) for fps
        self._checked = False
        self.resume = resume
        self.skip_through: int | None = None
        self._rejected_before = self._rejected_here = self._rejections_reported = 0
        self._elapsed_before = 0.0
        self._run_started = time.perf_counter()
        self.door = FrameDoor(door_limits)  # value checks; keeps the expected frame index
        self._frame_info: tuple[int, int, dict[str, float]] | None = None  # H, W px; camera
        if resume:
            self._resume_totals()
        if self.summary.run_id is None:
            self.summary.run_id = time.time_ns()
        self._resume_pending = self.skip_through is not None
        # A network's own super-resolution image (Deep-STORM): summed, saved, published.
        self.image: NetworkImageKeeper | None = None
        if localizer.image_upsampling is not None:
            self.image = NetworkImageKeeper(
                run_dir,
                localizer.pixel_size_nm / localizer.image_upsampling,
                self.summary.run_id,
                resume=resume,
                publish_every_s=image_every_s,
            )
            if resume and self.image.frames < self.summary.frames_processed:
                log.warning(
                    "the network image holds %d of the %d frames localized so far: the worker "
                    "before this one ended before it saved the rest",
                    self.image.frames,
                    self.summary.frames_processed,
                )

    def _resume_totals(self) -> None:
        """Continue the totals of the worker this one replaces; skip what it already wrote.

        Its ``worker_summary.json``, rewritten after every batch once both files have it, is
        the commit record: rows beyond its ``localizations`` belong to a batch that was being
        written when that worker died and are cut from both files (their frames count as lost).
        """
        prev = WorkerSummary.load(self.run_dir / WORKER_SUMMARY_NAME)
        if prev is not None:
            _trim_files(self.run_dir, prev.localizations)
        # After a restart, frames already in the files are skipped so nothing is duplicated.
        if prev is None:
            self.skip_through = last_written_frame(self.run_dir / CSV_NAME)
        elif prev.last_frame is not None:
            self.skip_through = prev.last_frame
        elif prev.first_frame is not None:  # it died before finishing its first frame
            self.skip_through = prev.first_frame - 1
        if prev is not None:
            prev.resumed += 1
            self._rejected_before = prev.rejected_messages
            self._elapsed_before = prev.elapsed_s
            self.summary = prev
        else:
            self.summary.resumed = 1

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ set-up on first frame
    def _open_sinks(self, first: FrameMsg) -> list[LocSink]:
        h, w = (int(s) for s in first.pixels.shape)
        cam = first.camera
        self._frame_info = (
            h,
            w,
            {
                "conversion": cam.e_per_adu,
                "emgain": cam.em_gain,
                "offset": cam.baseline_adu,
                "exposure_ms": cam.exposure_ms,
            },
        )
        return open_loc_files(self.run_dir, first, self.localizer, resume=self.resume)

    def _write_extra_formats(self) -> None:
        """The config's ``inference.extra_formats`` (DECODE h5, SMAP), from the finished CSV."""
        formats = self.config.inference.extra_formats if self.config is not None else ()
        if not formats or self._frame_info is None:
            return
        h, w, camera = self._frame_info
        try:
            locs = read_thunderstorm_csv(self.run_dir / CSV_NAME)
            written = write_extra_formats(
                locs,
                self.run_dir,
                formats,
                pixel_size_nm=self.localizer.pixel_size_nm,
                width_px=w,
                height_px=h,
                with_z=self.localizer.scaling.is_3d,
                camera=camera,
            )
        except (LocalizationFileError, OSError) as exc:  # the CSV and HDF5 are complete
            log.error("could not write %s: %s (%s is complete)", ", ".join(formats), exc, CSV_NAME)
            return
        for path in written:
            log.info("wrote %s (%d localizations)", path, len(locs))

    def _first_frame(self, frame: FrameMsg) -> None:
        card = self.localizer.card
        found = check_compatible(
            card, frame.camera, self.config, config_name=self.config_name
        ) + check_frame(card, frame.camera, frame.pixels)
        problems = refuse(card, found, self.override_mismatch)
        for p in problems:
            log.warning("model mismatch ignored (--ignore-model-mismatch): %s", p)
            self._notice("model_mismatch_ignored", p)  # reaches the run summary and the viewer
        self.summary.mismatches = problems
        self.processor.sinks = self._open_sinks(frame)
        if self.summary.first_frame is None:
            self.summary.first_frame = frame.index
        self._checked = True
        self._write_summary()  # the commit record exists as soon as the files do

    def _hello(self, hello: HelloMsg) -> None:
        """The source's camera before acquisition: check the model, warm up, answer ready.

        A mismatch is published as :data:`MODEL_REFUSED` and raised (the process exits 2),
        unless overridden; the answer :data:`WORKER_READY` is repeated until the first frame
        (a subscriber that connects late still hears it).
        """
        card = self.localizer.card
        found = check_compatible(
            card,
            hello.camera,
            self.config,
            frame_shape_px=hello.shape_px,
            config_name=self.config_name,
        )
        try:
            refuse(card, found, self.override_mismatch)
        except ModelCardError as exc:
            # Repeated for a while: a subscriber still connecting would miss a single message.
            for _ in range(REFUSAL_REPEATS):
                self._report(MODEL_REFUSED, str(exc))
                time.sleep(READY_EVERY_S / 2)
            raise
        if self._ready_at is None:
            self._warm_up(hello)
        self._ready_at = 0.0  # announce at once
        self._announce_ready()

    def _warm_up(self, hello: HelloMsg) -> None:
        """One inference of two blank frames of the camera's size (kernels, allocations)."""
        started = time.perf_counter()
        h, w = hello.shape_px
        blank = np.full((h, w), hello.camera.baseline_adu, dtype=np.float32)
        frames = [FrameMsg(i, 0, hello.camera, blank) for i in range(2)]
        StreamProcessor(self.localizer).process([*frames, EosMsg()])
        log.info("warmed up on %d×%d px in %.2f s", h, w, time.perf_counter() - started)

    def _announce_ready(self) -> None:
        if self._ready_at is None or self._checked or self.publisher is None:
            return
        now = time.perf_counter()
        if now - self._ready_at >= READY_EVERY_S:
            self._ready_at = now
            self._notice(WORKER_READY, self.localizer.card.name)

    def _reject(self, reason: str) -> None:
        self._rejected_here += 1
        log.warning("rejected frame-stream message: %s", reason)
        self._report("rejected_message", reason)

    def _report_puller_rejections(self) -> None:
        """Publish what the puller rejected (malformed messages) since the last report."""
        new = self.puller.rejected - self._rejections_reported
        if new > 0:
            self._rejections_reported = self.puller.rejected
            self._report("rejected_message", f"{new} × {self.puller.last_rejection}")

    def _report(self, code: str, message: str) -> None:
        """Publish a failure (``ErrorMsg``): frames lost, a bad message, a refused model."""
        if self.publisher is not None:
            self.publisher.publish(ErrorMsg(code=code, message=message))

    def _notice(self, name: str, message: str) -> None:
        """Publish a notice that is no failure (``EventMsg`` from :data:`WORKER_EVENTS`)."""
        if self.publisher is not None:
            self.publisher.publish(EventMsg(source=WORKER_EVENTS, name=name, message=message))

    def _check_resume_point(self, index: int) -> None:
        """After a restart: the frames between the last one written and ``index`` are lost."""
        if not self._resume_pending or self.skip_through is None:
            return
        self._resume_pending = False
        lost = index - self.skip_through - 1
        if lost > 0:
            self.summary.frames_lost_on_restart += lost
            msg = (
                f"worker restarted: frames {self.skip_through + 1}..{index - 1} ({lost}) were "
                "queued in the previous worker and are lost"
            )
            log.warning(msg)
            self._report("frames_lost", msg)

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
        self._run_started = time.perf_counter()
        last_msg = time.perf_counter()
        self.end_reason = "stopped"
        try:
            while not self._stop.is_set():
                msg = self.puller.recv(timeout_ms=100)
                self._report_puller_rejections()
                if msg is None:
                    self._announce_ready()
                    if (
                        self.idle_timeout_s is not None
                        and time.perf_counter() - last_msg > self.idle_timeout_s
                    ):
                        log.warning("no frames for %.0f s: stopping", self.idle_timeout_s)
                        self.end_reason = f"idle timeout: no frames for {self.idle_timeout_s:g} s"
                        break
                    continue
                last_msg = time.perf_counter()
                msgs = self._drain(msg)
                if self._handle(msgs):
                    self.end_reason = END_OF_STREAM
                    break
        finally:
            self.close()
        return self.summary

    def _update_totals(self, start: float) -> None:
        s = self.summary
        s.elapsed_s = self._elapsed_before + time.perf_counter() - start
        s.rejected_messages = self._rejected_before + self.puller.rejected + self._rejected_here

    def _handle(self, msgs: list[Message]) -> bool:
        """Process one drained batch; True at end of stream."""
        stream: list[Message] = []
        for m in msgs:
            if isinstance(m, FrameMsg):
                if self.skip_through is not None and m.index <= self.skip_through:
                    continue
                # A well-formed frame that would break the stream (and the process) is rejected.
                problem = self.door.frame_problem(m)
                if problem is not None:
                    self._reject(problem)
                    continue
                if not self._checked:
                    self._first_frame(m)
                self._check_resume_point(m.index)
                self.summary.frames_received += 1
                stream.append(m)
            elif isinstance(m, GapMsg):
                problem = self.door.gap_problem(m)
                if problem is not None:
                    self._reject(problem)
                    continue
                self._check_resume_point(m.first)
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
            elif isinstance(m, HelloMsg):
                self._hello(m)
            elif isinstance(m, LocsMsg | StatsMsg):
                self._reject(f"a {m.kind} message does not belong on the frame stream")
        result = self.processor.process(stream)
        self._publish(result, queue_depth=len(msgs) - 1)
        self._keep_image(result)
        if self.mismatch is not None:
            self._watch_mismatch(self.mismatch, stream, result)
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
        s.latency_ms.extend(lat)
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
        self._write_summary()
        if self.publisher is not None:
            self.publisher.publish_batch(result.locs, result.stats, worker)

    def _watch_mismatch(
        self, watch: MismatchWatch, stream: list[Message], result: BatchResult
    ) -> None:
        """Hand a sample of the frames to the mismatch thread; publish its alarms (O(1) here)."""
        watch.offer_frames([m for m in stream if isinstance(m, FrameMsg)])
        if result.stats:
            watch.offer_locs(result.locs, result.stats[-1].frame)
        for e in watch.events():
            state = "left" if e.raised else "is back in"
            message = (
                f"frame {e.frame}: forward-model residual χ²/px {e.running_chi2:.3f} {state} "
                f"the band [{e.band.lo:.3f}, {e.band.hi:.3f}] calibrated on the card; check the "
                "camera calibration (gain, offset) and the PSF against the model card"
            )
            if e.raised:  # the model does not fit the data: a failure
                self._report("model_mismatch", message)
            else:  # back in the band: a notice
                self._notice("model_mismatch_cleared", message)

    def _write_summary(self) -> None:
        """Totals on disk after every batch, atomically: a killed worker leaves them behind."""
        self._update_totals(self._run_started)
        if self.run_dir.is_dir():
            write_json(self.run_dir / WORKER_SUMMARY_NAME, self.summary.to_dict())

    def _keep_image(self, result: BatchResult) -> None:
        """Add the batch's image tiles; save and publish the image when due (at the end: now)."""
        keeper = self.image
        if keeper is None:
            return
        if result.image is not None and result.stats:
            keeper.add(result.image, len(result.stats), result.stats[-1].frame)
        keeper.save(force=result.finished)
        if self.publisher is not None:
            keeper.publish(self.publisher, force=result.finished)

    def close(self) -> None:
        self.processor.close()
        if self.image is not None:  # whatever the ending: the whole image, on disk and wire
            if self.image.save(force=True) is not None:
                log.info("wrote %s (%d frames)", self.image.path, self.image.frames)
            if self.publisher is not None:
                self.image.publish(self.publisher, force=True)
        self._write_extra_formats()
        self._write_summary()
        if self.mismatch is not None:
            self.mismatch.close()
            if self.run_dir.is_dir():
                write_json(self.run_dir / MISMATCH_NAME, self.mismatch.summary())


def _or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def open_loc_files(
    run_dir: Path, first: FrameMsg, localizer: NetworkLocalizer, *, resume: bool = False
) -> list[LocSink]:
    """The run directory's localization files (ThunderSTORM CSV, Picasso HDF5 + YAML).

    ``first`` is the stream's first frame (its size and camera go into the Picasso sidecar);
    with ``resume`` both files are appended to, and an HDF5 file a crash left behind the CSV is
    completed from the CSV.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    h, w = (int(s) for s in first.pixels.shape)
    with_z = localizer.scaling.is_3d
    csv = ThunderstormWriter(run_dir / CSV_NAME, resume=resume, with_z=with_z)
    hdf5 = PicassoWriter(
        run_dir / HDF5_NAME,
        width_px=w,
        height_px=h,
        pixel_size_nm=localizer.pixel_size_nm,
        with_z=with_z,
        extra_info={"model": localizer.card.summary(), "camera": _camera_info(first)},
        resume=resume,
    )
    if hdf5.n_written < csv.n_written:  # an HDF5 file a crash left unusable: rebuild it
        hdf5.append(read_thunderstorm_csv(run_dir / CSV_NAME)[hdf5.n_written :])
    return [csv, hdf5]


def _camera_info(frame: FrameMsg) -> dict[str, object]:
    info = {k: v for k, v in asdict(frame.camera).items() if k != "extra"}
    return {**info, **{k: v for k, v in frame.camera.extra.items() if isinstance(v, str)}}


def _trim_files(run_dir: Path, n_rows: int) -> None:
    """Cut the run's CSV and HDF5 back to their first ``n_rows`` localizations."""
    csv = run_dir / CSV_NAME
    if csv.is_file():
        with open(csv, "rb+") as f:
            ends = np.flatnonzero(np.frombuffer(f.read(), dtype=np.uint8) == ord("\n"))
            if len(ends) > n_rows + 1:  # header line + rows
                log.warning(
                    "%s: dropping %d rows of an unfinished batch", csv, len(ends) - 1 - n_rows
                )
                f.truncate(int(ends[n_rows]) + 1)
    h5 = run_dir / HDF5_NAME
    if not h5.is_file():
        return
    try:
        with h5py.File(h5, "a") as f:
            locs = f["locs"]
            if locs.shape[0] > n_rows:
                locs.resize((n_rows,))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        log.warning("%s cannot be reopened (%s); rebuilding it from %s", h5, exc, CSV_NAME)
        h5.unlink()


def last_written_frame(csv_path: Path) -> int | None:
    """The highest frame index in an existing localization CSV (None if none)."""
    if not csv_path.is_file():
        return None
    try:
        locs = read_thunderstorm_csv(csv_path)
    except LocalizationFileError:  # an empty file: nothing was written before the crash
        return None
    return int(locs["frame"].max()) if len(locs) else None
