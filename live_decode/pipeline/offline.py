"""Offline analysis of recorded movies through the worker code, as fast as it goes.

The replay source and the worker run as two threads of this process over a loopback socket;
the run directory is the same as a live run writes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import zmq

from live_decode.errors import LiveDecodeError, ModelCardError
from live_decode.inference.worker import InferenceWorker
from live_decode.io.calibration import write_calibration
from live_decode.messages import StatsMsg
from live_decode.pipeline.build import build_localizer, load_config_or_demo
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
from live_decode.sources.base import camera_from_config
from live_decode.sources.replay import ReplaySource, explicit_camera_keys
from live_decode.sources.runner import SourceRunner
from live_decode.strict_json import write_json
from live_decode.transport.frames import FramePuller, FramePusher
from live_decode.transport.results import ResultPublisher, ResultSubscriber

# progress(frames_done, frames_total)
Progress = Callable[[int, int], None]


def _catching(target: Callable[[], object], errors: list[BaseException]) -> Callable[[], None]:
    """``target`` for a thread: an exception is kept for the main thread instead of printed."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    return run


def localize_files(
    movies: Sequence[Path],
    out: Path,
    config: Path | None = None,
    model: Path | None = None,
    device: str | None = None,
    ignore_model_mismatch: bool = False,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> dict[str, object]:
    """Localize ``movies`` (in order, one stream) into the run directory ``out``.

    Returns the run summary (also written as ``out/summary.json``). What was localized before a
    failure stays in the run directory, ``summary.json`` says why it stopped (``status``,
    ``reason``), and the failure is raised after the files are closed. An ``out`` holding an
    earlier run's results is refused unless ``overwrite`` (which deletes them first).
    """
    cfg = load_config_or_demo(config)
    if out.is_dir() and earlier_results(out) and not overwrite:
        prepare_run_dir(out, overwrite=False)  # raises, naming the files and --overwrite
    label = str(config) if config is not None else None
    source = ReplaySource(  # bad movies and contradicting configs fail before the model loads
        list(movies),
        camera_from_config(cfg),
        config_keys=None if label is None else explicit_camera_keys(cfg, label),
        default_label=f"config default ({label})",
    )
    try:
        localizer = build_localizer(cfg, model, device)
    except BaseException:
        source.close()
        raise
    try:
        prepare_run_dir(out, overwrite=overwrite)
    except BaseException:
        source.close()
        raise
    cal = source.calibration
    write_calibration(out, cal.values, cal.sources, files=[str(m) for m in movies])
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pusher = FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True, sndhwm=8)
    puller = FramePuller(ctx, pusher.endpoint, rcvhwm=8)
    publisher = ResultPublisher(ctx, "tcp://127.0.0.1:*")
    sub = ResultSubscriber(ctx, publisher.endpoint, topics=("stats",))
    worker = InferenceWorker(
        localizer,
        puller,
        publisher,
        out,
        max_batch=cfg.inference.max_batch,
        override_mismatch=ignore_model_mismatch,
        # Without --config the demo config describes nothing about the file: camera checks only.
        config=cfg if config is not None else None,
        config_name=str(config) if config is not None else None,
    )
    state = RunState()
    worker_errors: list[BaseException] = []
    source_errors: list[BaseException] = []
    thread = threading.Thread(target=_catching(worker.run, worker_errors), name="worker")
    thread.start()
    runner = SourceRunner(source, pusher)
    src_thread = threading.Thread(target=_catching(runner.run, source_errors), name="source")
    src_thread.start()
    interrupted: list[BaseException] = []
    try:
        while thread.is_alive():
            msg = sub.recv(timeout_ms=100)
            if isinstance(msg, StatsMsg):
                state.absorb(msg)
            if progress is not None:
                progress(worker.summary.frames_processed, source.n_frames)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP as StopSignal: files complete
        interrupted.append(exc)
    finally:
        runner.stop()
        thread.join()
        # A worker that stopped early no longer reads: drain so a lossless send cannot block.
        while src_thread.is_alive():
            puller.recv(timeout_ms=50)
        src_thread.join()
        for s in (pusher, puller, publisher, sub):
            s.close()
        source.close()
        ctx.term()
    failures = interrupted + worker_errors + source_errors
    failure = failures[0] if failures else None
    if isinstance(failure, ModelCardError):
        failure = ModelCardError(f"{movies[0]}: {failure}")
    write_json(out / "source_summary.json", runner.summary.to_dict())
    summary = write_summary(out, state, _outcome(failure), live=False)
    plot_run(out, state.trace, cfg)
    if failure is not None:
        raise failure
    return summary


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
