"""The inference worker process of a run: frames in, localizations and stats out, files written."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import zmq

from live_decode.config import Config, SimulatedSourceConfig
from live_decode.inference.mismatch_watch import MismatchWatch
from live_decode.inference.worker import InferenceWorker
from live_decode.pipeline.build import (
    build_localizer,
    client_curve,
    load_config_or_demo,
    server_curve,
)
from live_decode.pipeline.exits import exit_with_parent, run_recorded, signal_name
from live_decode.transport.frames import FramePuller
from live_decode.transport.results import ResultPublisher

log = logging.getLogger("live_decode.pipeline.worker_process")


@dataclass(frozen=True)
class WorkerOptions:
    """Endpoints, model and run directory of one worker process (``live-decode worker``)."""

    frames_endpoint: str
    results_endpoint: str
    out: Path
    config: Path | None = None
    model: Path | None = None
    device: str | None = None
    resume: bool = False
    ignore_model_mismatch: bool = False
    idle_timeout_s: float | None = None


def _stop_on_signals(stop: Callable[[], None]) -> None:
    def handler(signum: int, _: FrameType | None) -> None:
        log.info("%s: finishing", signal_name(signum))
        stop()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


def run_worker(opts: WorkerOptions) -> int:
    """Localize the stream until end of stream, idle timeout or SIGTERM/SIGINT/SIGHUP.

    Why it ended is left in ``out/worker_exit.json`` (:mod:`live_decode.pipeline.exits`); the
    idle timeout is ``opts.idle_timeout_s``, else the config's ``inference.idle_timeout_s``.
    """
    return run_recorded("worker", opts.out, lambda: _run_worker(opts))


def _known_frame_bytes(cfg: Config) -> int | None:
    """Bytes of one uint16 frame where the config fixes the frame size (the simulated
    microscope), so the kernel's receive buffer is bounded like the source's send buffer; None
    (the OS default) for cameras and movies whose size is known only once they stream."""
    if isinstance(cfg.source, SimulatedSourceConfig):
        h, w = cfg.microscope.fov_px
        return int(h) * int(w) * 2
    return None


def _run_worker(opts: WorkerOptions) -> tuple[int, str]:
    exit_with_parent()
    stopped: list[bool] = []
    _stop_on_signals(lambda: stopped.append(True))  # while the model loads
    cfg = load_config_or_demo(opts.config)
    import torch

    # Oversubscribed cores make small convolutions many times slower: leave one to the source.
    torch.set_num_threads(cfg.inference.cpu_threads or max(1, (os.cpu_count() or 2) - 1))
    localizer = build_localizer(cfg, opts.model, opts.device)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    puller = FramePuller(
        ctx,
        opts.frames_endpoint,
        rcvhwm=cfg.transport.frame_queue,
        curve=client_curve(cfg),
        frame_bytes=_known_frame_bytes(cfg),
    )
    publisher = ResultPublisher(ctx, opts.results_endpoint, curve=server_curve(cfg))
    mismatch = None
    if cfg.quality.mismatch and localizer.predicts_photons:  # the residual needs photons
        mismatch = MismatchWatch(localizer.card.parsed_config, cfg.quality.mismatch_max_rate_hz)
    worker = InferenceWorker(
        localizer,
        puller,
        publisher,
        opts.out,
        max_batch=cfg.inference.max_batch,
        override_mismatch=opts.ignore_model_mismatch or cfg.inference.ignore_model_mismatch,
        idle_timeout_s=opts.idle_timeout_s or cfg.inference.idle_timeout_s,
        resume=opts.resume,
        config=cfg,  # the simulated/configured setup: PSF, z range, temporal context checked
        config_name=str(opts.config) if opts.config is not None else None,
        mismatch=mismatch,
    )
    _stop_on_signals(worker.stop)
    if stopped:
        worker.stop()
    log.info("worker: %s on %s", localizer.card.summary(), localizer.device)
    try:
        summary = worker.run()
    finally:
        puller.close()
        publisher.close(linger_ms=500)
        ctx.term()
    log.info(
        "worker done (%s): %d frames, %d localizations",
        worker.end_reason,
        summary.frames_processed,
        summary.localizations,
    )
    return 0, worker.end_reason
