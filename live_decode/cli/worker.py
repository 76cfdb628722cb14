"""``live-decode worker``: the inference worker process."""

from __future__ import annotations

import argparse
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import zmq

from live_decode.cli._pipeline import add_config_argument, build_localizer, load_config_or_demo
from live_decode.inference.worker import InferenceWorker
from live_decode.transport.frames import FramePuller
from live_decode.transport.results import ResultPublisher

log = logging.getLogger("live_decode.cli.worker")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--frames-endpoint", required=True, help="the source's frame PUSH socket")
    p.add_argument("--results-endpoint", required=True, help="where to bind the results PUB")
    p.add_argument("--out", type=Path, required=True, help="run directory for the files")
    p.add_argument("--model", type=Path, default=None, help="model file (default: config/bundled)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: config)")
    p.add_argument("--resume", action="store_true", help="append to the run's existing files")
    p.add_argument(
        "--ignore-model-mismatch",
        action="store_true",
        help="run although the model card does not match the camera",
    )
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after S idle seconds")


def _stop_on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, _: FrameType | None) -> None:
        log.info("signal %d: finishing", signum)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(args: argparse.Namespace) -> int:
    cfg = load_config_or_demo(args.config)
    import torch

    # Oversubscribed cores make small convolutions many times slower: leave one to the source.
    torch.set_num_threads(cfg.inference.cpu_threads or max(1, (os.cpu_count() or 2) - 1))
    localizer = build_localizer(cfg, args.model, args.device)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    puller = FramePuller(ctx, args.frames_endpoint, rcvhwm=cfg.transport.frame_queue)
    publisher = ResultPublisher(ctx, args.results_endpoint)
    worker = InferenceWorker(
        localizer,
        puller,
        publisher,
        args.out,
        max_batch=cfg.inference.max_batch,
        override_mismatch=args.ignore_model_mismatch or cfg.inference.ignore_model_mismatch,
        idle_timeout_s=args.idle_timeout,
        resume=args.resume,
    )
    _stop_on_signals(worker.stop)
    log.info("worker: %s on %s", localizer.card.summary(), localizer.device)
    try:
        summary = worker.run()
    finally:
        puller.close()
        publisher.close(linger_ms=500)
        ctx.term()
    log.info(
        "worker done: %d frames, %d localizations", summary.frames_processed, summary.localizations
    )
    return 0
