"""The source process of a run: camera / replay / simulated microscope, laser and controller.

Binds the frame PUSH (and the preview PUB and control REP), runs the density controller where the
source has an activation laser, and writes ``source_summary.json`` into the run directory.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import zmq

from live_decode.config import Config, MMSourceConfig
from live_decode.control import ControlLoop
from live_decode.io.calibration import CAMERA_KEYS, Calibration, write_calibration
from live_decode.io.movie import RAW_NAME, MovieRecorder
from live_decode.pipeline.build import build_source, load_config_or_demo
from live_decode.sources.base import Actuator, FrameSource, activation_laser
from live_decode.sources.replay import DEMO_LABEL
from live_decode.sources.runner import SourceRunner, laser_handler
from live_decode.strict_json import write_json
from live_decode.transport.control import ControlServer
from live_decode.transport.frames import FramePusher
from live_decode.transport.preview import PreviewPublisher
from live_decode.transport.results import ResultSubscriber

log = logging.getLogger("live_decode.pipeline.source_process")


@dataclass(frozen=True)
class SourceOptions:
    """Endpoints and limits of one source process (``live-decode source``)."""

    frames_endpoint: str
    config: Path | None = None
    preview_endpoint: str | None = None
    control_endpoint: str | None = None
    results_endpoint: str | None = None
    replay: tuple[Path, ...] | None = None
    realtime: bool = False
    frames: int | None = None
    seconds: float | None = None
    out: Path | None = None
    record_raw: bool = True


def _actuator(source: FrameSource) -> Actuator | None:
    """What the density controller drives: the source's activation laser, if it has one."""
    return activation_laser(source)


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


def _calibration_of(
    source: FrameSource, cfg: Config, label: str | None
) -> tuple[dict[str, float], dict[str, str]]:
    """The camera values the source streams with, and where each came from."""
    cal = getattr(source, "calibration", None)  # a replayed file's own calibration
    if isinstance(cal, Calibration):
        return cal.values, cal.sources
    cam = source.camera
    values = {k: float(getattr(cam, k)) for k in CAMERA_KEYS}
    if isinstance(cfg.source, MMSourceConfig):
        origin = "camera (Micro-Manager core properties) and config"
    else:
        origin = f"config {label}" if label is not None else DEMO_LABEL
    return values, dict.fromkeys(values, origin)


def _raw_recorder(cfg: Config, source: FrameSource, opts: SourceOptions) -> MovieRecorder | None:
    """``<out>/raw.ome.tif`` for a live source with ``source.record_raw`` (a replay is on disk)."""
    if opts.out is None or not opts.record_raw or opts.replay:
        return None
    if not getattr(cfg.source, "record_raw", False):
        return None
    cam = source.camera
    camera: dict[str, object] = {k: float(getattr(cam, k)) for k in CAMERA_KEYS}
    camera["kind"] = "emccd" if cam.em_gain > 1 else cfg.camera.kind
    return MovieRecorder(
        opts.out / RAW_NAME,
        camera,
        source.frame_interval_ms,
        extra={"source": cfg.source.kind, "config": cfg.model_dump(mode="json")},
    )


def run_source(opts: SourceOptions) -> int:
    """Run the source until its stream ends, its limits are reached, or SIGTERM/SIGINT."""
    import torch

    # Small simulated frames run fastest on one thread and leave the cores to the worker.
    torch.set_num_threads(1)
    cfg = load_config_or_demo(opts.config)
    label = str(opts.config) if opts.config is not None else None
    source = build_source(cfg, list(opts.replay) if opts.replay else None, config_label=label)
    if opts.out is not None:
        write_calibration(opts.out, *_calibration_of(source, cfg, label))
    recorder = _raw_recorder(cfg, source, opts)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    realtime = bool(opts.realtime or getattr(cfg.source, "realtime", False))
    lossless = not source.live and not realtime
    pusher = FramePusher(
        ctx, opts.frames_endpoint, lossless=lossless, sndhwm=cfg.transport.frame_queue
    )
    preview = PreviewPublisher(ctx, opts.preview_endpoint) if opts.preview_endpoint else None
    loop = _control_loop(cfg, source, ctx, opts.results_endpoint, opts.out)
    handler = loop.handle if loop is not None else laser_handler(source)
    control = ControlServer(ctx, handler, opts.control_endpoint) if opts.control_endpoint else None
    runner = SourceRunner(
        source,
        pusher,
        preview=preview,
        control=control,
        realtime=True if realtime else None,
        max_frames=opts.frames,
        max_seconds=opts.seconds,
        on_tick=loop.on_tick if loop is not None else None,
        recorder=recorder,
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
        if recorder is not None:
            recorder.close()  # writes the OME-XML: pixel size, camera, frame indices
        source.close()
        ctx.term()
    if opts.out is not None:
        opts.out.mkdir(parents=True, exist_ok=True)
        write_json(opts.out / "source_summary.json", summary.to_dict())
    log.info("source done: %d frames sent, %d dropped", summary.frames_sent, summary.frames_dropped)
    return 0
