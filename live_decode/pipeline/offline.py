"""Offline analysis of recorded movies through the worker code, as fast as it goes.

The replay source and the worker run as two threads of this process over a loopback socket;
the run directory is the same as a live run writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import zmq

from live_decode.errors import ModelCardError
from live_decode.inference.worker import InferenceWorker
from live_decode.io.calibration import write_calibration
from live_decode.messages import StatsMsg
from live_decode.pipeline.build import build_localizer, load_config_or_demo
from live_decode.pipeline.plots import plot_run
from live_decode.pipeline.supervisor import RunState, write_summary
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
) -> dict[str, object]:
    """Localize ``movies`` (in order, one stream) into the run directory ``out``.

    Returns the run summary (also written as ``out/summary.json``). What was localized before a
    failure stays in the run directory; the failure is raised after the files are closed.
    """
    cfg = load_config_or_demo(config)
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
    out.mkdir(parents=True, exist_ok=True)
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
    try:
        while thread.is_alive():
            msg = sub.recv(timeout_ms=100)
            if isinstance(msg, StatsMsg):
                state.absorb(msg)
            if progress is not None:
                progress(worker.summary.frames_processed, source.n_frames)
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
    write_json(out / "source_summary.json", runner.summary.to_dict())
    summary = write_summary(out, state)
    plot_run(out, state.stats, cfg)
    if worker_errors or source_errors:
        exc = (worker_errors or source_errors)[0]
        if isinstance(exc, ModelCardError):
            raise ModelCardError(f"{movies[0]}: {exc}") from None
        raise exc
    return summary
