"""``live-decode localize MOVIE``: offline analysis through the worker code, as fast as it goes.

The replay source and the worker run as two threads of this process over a loopback socket;
the run directory is the same as ``run`` writes.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from pathlib import Path

import zmq
from rich.progress import Progress

from live_decode.cli._pipeline import build_localizer, load_config_or_demo
from live_decode.cli.plots import plot_run
from live_decode.cli.run import RunState, write_summary
from live_decode.errors import ModelCardError
from live_decode.inference.worker import InferenceWorker
from live_decode.messages import StatsMsg
from live_decode.sources.base import camera_from_config
from live_decode.sources.replay import ReplaySource
from live_decode.sources.runner import SourceRunner
from live_decode.transport.frames import FramePuller, FramePusher
from live_decode.transport.results import ResultPublisher, ResultSubscriber


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("movie", type=Path, nargs="+", help="TIFF / OME-TIFF movie(s), in order")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="camera/model config for files without metadata (default: demo)",
    )
    p.add_argument(
        "--model", type=Path, default=None, help="model file (.pt); default: config or bundled"
    )
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument(
        "--device", default=None, help="auto (CUDA if present), cpu, cuda, cuda:N; default: config"
    )
    p.add_argument(
        "--ignore-model-mismatch",
        action="store_true",
        help="localize even if the model card does not fit the camera (a warning is kept)",
    )


def _catching(target: Callable[[], object], errors: list[BaseException]) -> Callable[[], None]:
    """``target`` for a thread: an exception is kept for the main thread instead of printed."""

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    return run


def run(args: argparse.Namespace) -> int:
    cfg = load_config_or_demo(args.config)
    source = ReplaySource(args.movie, camera_from_config(cfg))  # bad movies fail before loading
    try:
        localizer = build_localizer(cfg, args.model, args.device)
    except BaseException:
        source.close()
        raise
    args.out.mkdir(parents=True, exist_ok=True)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pusher = FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True, sndhwm=8)
    puller = FramePuller(ctx, pusher.endpoint, rcvhwm=8)
    publisher = ResultPublisher(ctx, "tcp://127.0.0.1:*")
    sub = ResultSubscriber(ctx, publisher.endpoint, topics=("stats",))
    worker = InferenceWorker(
        localizer,
        puller,
        publisher,
        args.out,
        max_batch=cfg.inference.max_batch,
        override_mismatch=args.ignore_model_mismatch,
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
        with Progress() as progress:
            task = progress.add_task("localize", total=source.n_frames)
            while thread.is_alive():
                msg = sub.recv(timeout_ms=100)
                if isinstance(msg, StatsMsg):
                    state.absorb(msg)
                progress.update(task, completed=worker.summary.frames_processed)
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
    (args.out / "source_summary.json").write_text(json.dumps(runner.summary.to_dict(), indent=2))
    summary = write_summary(args.out, state)
    plot_run(args.out, state.stats, cfg)
    if worker_errors or source_errors:
        # What was localized before the failure stays in the run directory.
        exc = (worker_errors or source_errors)[0]
        if isinstance(exc, ModelCardError):
            raise ModelCardError(f"{args.movie[0]}: {exc}") from None
        raise exc
    print(json.dumps(summary, indent=2))
    return 0
