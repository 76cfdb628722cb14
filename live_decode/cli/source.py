"""``live-decode source``: the source process (camera / replay / simulated microscope)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
from pathlib import Path
from types import FrameType

import zmq

from live_decode.cli._pipeline import add_config_argument, build_source, load_config_or_demo
from live_decode.config import Config
from live_decode.control import Actuator, ControlLoop, SimulatedLaserActuator
from live_decode.sources.base import FrameSource
from live_decode.sources.runner import SourceRunner, laser_handler
from live_decode.sources.simulated import SimulatedSource
from live_decode.transport.control import ControlServer
from live_decode.transport.frames import FramePusher
from live_decode.transport.preview import PreviewPublisher
from live_decode.transport.results import ResultSubscriber

log = logging.getLogger("live_decode.cli.source")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--frames-endpoint", required=True, help="where to bind the frame PUSH")
    p.add_argument("--preview-endpoint", default=None, help="where to bind the preview PUB")
    p.add_argument("--control-endpoint", default=None, help="where to bind the control REP")
    p.add_argument(
        "--results-endpoint",
        default=None,
        help="the worker's results PUB (for the density controller)",
    )
    p.add_argument("--replay", type=Path, nargs="+", default=None, help="replay these movies")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="replay at camera speed, dropping frames like a camera",
    )
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    p.add_argument("--out", type=Path, default=None, help="run directory for source_summary.json")


def _actuator(source: FrameSource) -> Actuator | None:
    """What the density controller drives: the source's activation laser, if it has one."""
    if isinstance(source, SimulatedSource):
        return SimulatedLaserActuator(source)
    laser = getattr(source, "laser", None)  # a Micro-Manager source's laser property actuator
    return laser if isinstance(laser, Actuator) else None


def _control_loop(
    cfg: Config,
    source: FrameSource,
    ctx: zmq.Context[zmq.Socket[bytes]],
    results_endpoint: str | None,
    out: Path | None,
) -> ControlLoop | None:
    """The density controller, when the source has a laser and the worker's stats are reachable."""
    actuator = _actuator(source)
    if actuator is None or results_endpoint is None:
        if cfg.control.mode == "auto":
            log.warning("control.mode is auto but there is no laser or no stats: running open")
        return None
    sub = ResultSubscriber(ctx, results_endpoint, topics=("stats", "event"))
    return ControlLoop(cfg.control, actuator, sub, run_dir=out)


def run(args: argparse.Namespace) -> int:
    import torch

    # Small simulated frames run fastest on one thread and leave the cores to the worker.
    torch.set_num_threads(1)
    cfg = load_config_or_demo(args.config)
    source = build_source(cfg, args.replay)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    realtime = bool(args.realtime or getattr(cfg.source, "realtime", False))
    lossless = not source.live and not realtime
    pusher = FramePusher(
        ctx, args.frames_endpoint, lossless=lossless, sndhwm=cfg.transport.frame_queue
    )
    preview = PreviewPublisher(ctx, args.preview_endpoint) if args.preview_endpoint else None
    loop = _control_loop(cfg, source, ctx, args.results_endpoint, args.out)
    handler = loop.handle if loop is not None else laser_handler(source)
    control = ControlServer(ctx, handler, args.control_endpoint) if args.control_endpoint else None
    runner = SourceRunner(
        source,
        pusher,
        preview=preview,
        control=control,
        realtime=True if realtime else None,
        max_frames=args.frames,
        max_seconds=args.seconds,
        on_tick=loop.on_tick if loop is not None else None,
    )

    def stop(signum: int, _: FrameType | None) -> None:
        log.info("signal %d: stopping the source", signum)
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        summary = runner.run()
    finally:
        if loop is not None:
            loop.close()
            if loop.subscriber is not None:
                loop.subscriber.close()
        for s in (pusher, preview, control):
            if s is not None:
                s.close()
        source.close()
        ctx.term()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "source_summary.json").write_text(json.dumps(summary.to_dict(), indent=2))
    log.info("source done: %d frames sent, %d dropped", summary.frames_sent, summary.frames_dropped)
    return 0
