"""Offline analysis without sockets: frames in, localizations out, with the worker's checks.

:class:`OfflineStream` is the one path from frames to localizations outside a live run: the
model card is checked against the camera on the first frame exactly as the worker checks it
(:func:`~live_decode.inference.compat.check_card`), frames go through the worker's
:class:`~live_decode.inference.processor.StreamProcessor` in fixed chunks of ``batch_frames``
(so two analyses of the same frames batch, and therefore compute, identically), and memory stays
bounded by one chunk whatever the movie's length. ``live-decode localize`` (:func:`localize_files`)
and ``ld.load_model().localize`` both run it, so they give the same rows.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode.config import Config
from live_decode.errors import LiveDecodeError, LocalizationFileError, ModelCardError
from live_decode.inference.compat import check_card
from live_decode.inference.processor import BatchResult, LocSink, StreamProcessor
from live_decode.inference.worker import (
    CSV_NAME,
    WORKER_SUMMARY_NAME,
    WorkerSummary,
    open_loc_files,
)
from live_decode.io.calibration import describe_calibration, write_calibration
from live_decode.io.formats import write_extra_formats
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import (
    CameraMeta,
    EosMsg,
    FrameMsg,
    GapMsg,
    Message,
    StatsMsg,
    WorkerStats,
)
from live_decode.model.card import read_card
from live_decode.model.seam import NetworkLocalizer
from live_decode.pipeline.build import build_localizer, load_config_or_demo, model_path
from live_decode.pipeline.exits import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    StopSignal,
    signal_name,
)
from live_decode.pipeline.plots import plot_run
from live_decode.pipeline.run_dir import earlier_results, prepare_run_dir
from live_decode.pipeline.supervisor import Outcome, RunState, write_summary
from live_decode.sources.base import SourceFrame, camera_from_config
from live_decode.sources.replay import (
    DEMO_LABEL,
    ReplaySource,
    card_camera_label,
    explicit_camera_keys,
)
from live_decode.sources.runner import SourceSummary
from live_decode.strict_json import write_json

log = logging.getLogger("live_decode.pipeline.offline")

# progress(frames_done, frames_total); frames_total is 0 when unknown (an iterator of frames)
Progress = Callable[[int, int], None]
OpenSinks = Callable[[FrameMsg], Sequence[LocSink]]
# How the frames of a run become batches: stream.batches(source_frames(source)) in one process,
# or chunks on a Dask cluster (live_decode.pipeline.distributed) merged back in order.
Batches = Callable[["ReplaySource", "OfflineStream"], Iterable[BatchResult]]


class OfflineStream:
    """Localize a stream of (H, W) ADU frames in order, as the live worker would.

    Parameters
    ----------
    localizer
        The loaded model (:func:`~live_decode.pipeline.build.build_localizer`).
    camera
        The camera the frames come from: its calibration converts ADU to photons, and the model
        card is checked against it.
    config
        The setup's config: PSF, z range and temporal context are checked against the card too
        when given (the worker's check with a config); None checks the camera only.
    ignore_model_mismatch
        Localize although the card does not fit; the mismatches are kept in :attr:`mismatches`.
    batch_frames
        Frames per network call (``inference.max_batch``).
    open_sinks
        Called with the first frame; returns the files the localizations are appended to.
    """

    def __init__(
        self,
        localizer: NetworkLocalizer,
        camera: CameraMeta,
        *,
        config: Config | None = None,
        config_name: str | None = None,
        ignore_model_mismatch: bool = False,
        batch_frames: int = 32,
        open_sinks: OpenSinks | None = None,
    ) -> None:
        if batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
        self.localizer = localizer
        self.camera = camera
        self.config = config
        self.config_name = config_name  # the config file, named in the `live-decode train` hint
        self.ignore_model_mismatch = ignore_model_mismatch
        self.batch_frames = batch_frames
        self.open_sinks = open_sinks
        self.processor = StreamProcessor(localizer)
        self.mismatches: list[str] = []
        self.frames_in = 0
        self._next_index = 0  # the camera frame index expected next
        self._last_index: int | None = None

    def _message(self, index: int, pixels: npt.ArrayLike) -> FrameMsg:
        frame = np.asarray(pixels)
        if frame.ndim != 2:
            raise ValueError(
                f"frame {index} has shape {frame.shape}; frames must be (H, W) camera ADU "
                "(pass a (T, H, W) movie or an iterator of (H, W) frames)"
            )
        msg = FrameMsg(index=index, timestamp_ns=time.time_ns(), camera=self.camera, pixels=frame)
        if self.frames_in == 0:
            self._first_frame(msg)
        return msg

    def _first_frame(self, msg: FrameMsg) -> None:
        card = self.localizer.card
        self.mismatches = check_card(
            card, msg.camera, msg.pixels, self.ignore_model_mismatch, self.config, self.config_name
        )
        for problem in self.mismatches:
            log.warning("model mismatch ignored (ignore_model_mismatch): %s", problem)
        if self.open_sinks is not None:
            self.processor.sinks = list(self.open_sinks(msg))

    def batches(self, frames: Iterable[npt.ArrayLike | SourceFrame]) -> Iterator[BatchResult]:
        """One :class:`BatchResult` per chunk of frames, the last one at end of stream.

        Frames are (H, W) arrays, numbered from 0, or :class:`SourceFrame` s that carry their
        camera frame index (a raw recording of a live run): a jump in those indices is a gap,
        so temporal context is never bridged across frames the camera lost. A frame that cannot
        be read (the iterator raises) ends the stream there: the frames before it are localized
        and written first, then the error is raised.
        """
        chunk: list[Message] = []
        it = iter(frames)
        while True:
            try:
                pixels = next(it)
            except StopIteration:
                break
            except BaseException:
                # The frames before the one that failed are localized (and written) first.
                yield self.processor.process([*chunk, EosMsg(last_index=self._last_index)])
                raise
            index = self._next_index
            if isinstance(pixels, SourceFrame):
                index, pixels = pixels.index, pixels.pixels
                if self.frames_in > 0 and index > self._next_index:
                    chunk.append(GapMsg(first=self._next_index, count=index - self._next_index))
            chunk.append(self._message(index, pixels))
            self.frames_in += 1
            self._last_index, self._next_index = index, index + 1
            if len(chunk) == self.batch_frames:
                yield self.processor.process(chunk)
                chunk = []
        yield self.processor.process([*chunk, EosMsg(last_index=self._last_index)])

    def open(self, first: SourceFrame) -> None:
        """Check the card against the stream's first frame and open the files, localizing
        nothing: the frames are localized elsewhere (Dask workers) and :meth:`merge` d in."""
        self._message(first.index, first.pixels)

    def merge(self, result: BatchResult, frames_in: int) -> BatchResult:
        """Write a chunk localized elsewhere (``frames_in`` frames) to the files, in order."""
        for sink in self.processor.sinks:
            sink.append(result.locs)
        self.frames_in += frames_in
        self.processor.frames_processed += len(result.stats)
        self.processor.n_locs += len(result.locs)
        return result

    def close(self) -> None:
        """Close the files (the localizations are flushed after every chunk already)."""
        self.processor.close()


def source_frames(source: ReplaySource) -> Iterator[SourceFrame]:
    """Every frame the replay source reads, in order, with its recorded camera frame index."""
    while (frame := source.read()) is not None:
        yield frame


def localize_files(
    movies: Sequence[Path],
    out: Path,
    config: Path | None = None,
    model: Path | None = None,
    device: str | None = None,
    ignore_model_mismatch: bool = False,
    progress: Progress | None = None,
    overwrite: bool = False,
    batches: Batches | None = None,
    prefer_file_metadata: bool = True,
) -> dict[str, object]:
    """Localize ``movies`` (in order, one stream) into the run directory ``out``.

    The camera comes from the files' metadata (as ``live-decode simulate`` writes it), else from
    ``config``, else (no config) from the model card: the camera the model was trained for,
    with a warning that names every value so assumed and ``live-decode calibrate``. The
    calibration in use and the source of each value are logged and kept in ``calibration.json``.
    Writes ``locs.csv``, ``locs.hdf5`` (+ ``.yaml``),
    ``calibration.json``, ``worker_summary.json``, ``source_summary.json``, ``summary.json`` and
    the plots; returns the summary. What was localized before a failure stays in the run
    directory, ``summary.json`` says why it stopped (``status``, ``reason``), and the failure is
    raised after the files are closed. An ``out`` holding an earlier run's results is refused
    unless ``overwrite`` (which deletes them first). ``batches`` replaces the one-process loop
    (:func:`live_decode.pipeline.distributed.localize_many` passes its Dask chunks).
    ``prefer_file_metadata=False`` takes every camera value from ``config`` (``fit`` localizes
    with the camera it calibrated and trained for).
    """
    cfg = load_config_or_demo(config)
    if out.is_dir() and earlier_results(out) and not overwrite:
        prepare_run_dir(out, overwrite=False)  # raises, naming the files and --overwrite
    label = str(config) if config is not None else None
    camera, fallback = camera_from_config(cfg), DEMO_LABEL
    if config is None:  # no camera given: the one the model was trained for, said loudly
        card = read_card(model_path(cfg, model))
        camera, fallback = camera_from_config(card.parsed_config), card_camera_label(card.name)
    source = ReplaySource(  # bad movies and contradicting configs fail before the model loads
        list(movies),
        camera,
        config_keys=None if label is None else explicit_camera_keys(cfg, label),
        default_label=f"config default ({label})",
        fallback_label=fallback,
        prefer_file_metadata=prefer_file_metadata,
    )
    log.info("camera calibration: %s", describe_calibration(source.calibration))
    try:
        localizer = build_localizer(cfg, model, device)
        prepare_run_dir(out, overwrite=overwrite)
    except BaseException:
        source.close()
        raise
    cal = source.calibration
    write_calibration(out, cal.values, cal.sources, files=[str(m) for m in movies])
    stream = OfflineStream(
        localizer,
        source.camera,
        # Without --config the demo config describes nothing about the file: camera checks only.
        config=cfg if config is not None else None,
        config_name=label,
        ignore_model_mismatch=ignore_model_mismatch,
        batch_frames=cfg.inference.max_batch,
        open_sinks=lambda first: open_loc_files(out, first, localizer),
    )
    state = RunState()
    worker = WorkerSummary()
    started = time.perf_counter()
    failure: BaseException | None = None
    try:
        run = batches(source, stream) if batches else stream.batches(source_frames(source))
        for result in run:
            _count(worker, result, state, started)
            if progress is not None:
                progress(worker.frames_processed, source.n_frames)
    except BaseException as exc:  # Ctrl-C, or SIGTERM/SIGHUP as StopSignal: files complete
        failure = exc
    finally:
        stream.close()
        source.close()
    worker.frames_received = stream.frames_in
    worker.mismatches = stream.mismatches
    worker.elapsed_s = time.perf_counter() - started
    if isinstance(failure, ModelCardError):
        failure = ModelCardError(f"{movies[0]}: {failure}")
    try:
        write_json(out / WORKER_SUMMARY_NAME, worker.to_dict())
        if config is not None and failure is None and worker.first_frame is not None:
            _extra_formats(out, cfg, localizer, source.shape_px, source.camera)
        write_json(out / "source_summary.json", _source_summary(stream, worker).to_dict())
        summary = write_summary(out, state, _outcome(failure), live=False)
        plot_run(out, state.trace, cfg)
    except OSError as exc:  # a full disk: the failure that stopped the analysis comes first
        if failure is None:
            raise
        log.error("cannot write the summary of %s: %s", out, exc)
    if failure is not None:
        raise failure
    return summary


def _count(worker: WorkerSummary, result: BatchResult, state: RunState, started: float) -> None:
    """Add one batch to the worker's totals and to what a supervisor would have seen."""
    if not result.stats:
        return
    worker.batches += 1
    worker.frames_processed += len(result.stats)
    worker.localizations += len(result.locs)
    if worker.first_frame is None:
        worker.first_frame = result.stats[0].frame
    worker.last_frame = result.stats[-1].frame
    worker.elapsed_s = time.perf_counter() - started
    fps = worker.frames_processed / worker.elapsed_s if worker.elapsed_s > 0 else 0.0
    stats = WorkerStats(fps=fps, latency_ms=float("nan"), queue_depth=0, dropped_upstream=0)
    state.absorb(StatsMsg(frame_stats=tuple(result.stats), worker=stats))
    if result.finished:
        state.eos = True


def _extra_formats(
    out: Path,
    cfg: Config,
    localizer: NetworkLocalizer,
    shape_px: tuple[int, int],
    camera: CameraMeta,
) -> None:
    """The config's ``inference.extra_formats`` (DECODE h5, SMAP), as the worker writes them."""
    formats = cfg.inference.extra_formats
    if not formats:
        return
    try:
        write_extra_formats(
            read_thunderstorm_csv(out / CSV_NAME),
            out,
            formats,
            pixel_size_nm=localizer.pixel_size_nm,
            width_px=shape_px[1],
            height_px=shape_px[0],
            with_z=localizer.scaling.is_3d,
            camera={
                "conversion": camera.e_per_adu,
                "emgain": camera.em_gain,
                "offset": camera.baseline_adu,
                "exposure_ms": camera.exposure_ms,
            },
        )
    except (LocalizationFileError, OSError) as exc:  # the CSV and HDF5 are complete
        log.error("could not write %s: %s (%s is complete)", ", ".join(formats), exc, CSV_NAME)


def _source_summary(stream: OfflineStream, worker: WorkerSummary) -> SourceSummary:
    return SourceSummary(
        frames_read=stream.frames_in,
        frames_sent=stream.frames_in,
        elapsed_s=worker.elapsed_s,
        eos_sent=True,
    )


def _outcome(failure: BaseException | None) -> Outcome:
    """How an offline analysis ended (see :mod:`live_decode.pipeline.exits`)."""
    if failure is None:
        return Outcome("completed", EXIT_OK)
    if isinstance(failure, ModelCardError):
        return Outcome("refused", EXIT_BAD_INPUT, str(failure))
    if isinstance(failure, LiveDecodeError):
        return Outcome("bad_input", EXIT_BAD_INPUT, str(failure))
    if isinstance(failure, KeyboardInterrupt):
        signum = failure.signum if isinstance(failure, StopSignal) else signal.SIGINT
        return Outcome("interrupted", 128 + signum, f"stopped by {signal_name(signum)}")
    return Outcome("failed", EXIT_FAILED, f"{type(failure).__name__}: {failure}")


__all__ = ["OfflineStream", "localize_files", "source_frames"]
