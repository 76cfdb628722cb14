"""The source process of a run: camera / replay / simulated microscope, laser and controller.

Binds the frame PUSH (and the preview PUB and control REP), runs the density controller where the
source has an activation laser, and writes ``source_summary.json`` into the run directory.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import zmq

from live_decode.config import Config, MMSourceConfig
from live_decode.control import ControlLoop
from live_decode.errors import ConfigError, ModelCardError
from live_decode.io.calibration import CAMERA_KEYS, Calibration, write_calibration
from live_decode.io.movie import RAW_NAME, MovieRecorder
from live_decode.messages import MODEL_REFUSED, WORKER_READY, ErrorMsg, EventMsg
from live_decode.pipeline.build import (
    build_source,
    client_curve,
    load_config_or_demo,
    server_curve,
)
from live_decode.pipeline.exits import (
    exit_with_parent,
    run_recorded,
    signal_name,
)
from live_decode.sources.base import Actuator, FrameSource, activation_laser
from live_decode.sources.replay import DEMO_LABEL
from live_decode.sources.runner import SourceRunner, SourceSummary, laser_handler
from live_decode.strict_json import write_json
from live_decode.transport.control import ControlServer
from live_decode.transport.curve import ClientKeys
from live_decode.transport.frames import FramePusher
from live_decode.transport.preview import PreviewPublisher
from live_decode.transport.results import ResultSubscriber

log = logging.getLogger("live_decode.pipeline.source_process")
HELLO_EVERY_S = 10.0  # the camera description is re-sent this often until the worker answers


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
    wait_for_worker_s: float | None = None  # send hello, start only once the worker is ready
    record_raw: bool = True


def _stop_on_signals(stop: Callable[[int], None]) -> None:
    def handler(signum: int, _: FrameType | None) -> None:
        log.info("%s: stopping the source", signal_name(signum))
        stop(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


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
    sub = ResultSubscriber(
        ctx, results_endpoint, topics=("stats", "event"), curve=client_curve(cfg)
    )
    try:
        return ControlLoop(cfg.control, actuator, sub, run_dir=out)
    except ValueError as exc:  # a safe power outside the laser's limits: the config is wrong
        sub.close()
        raise ConfigError(str(exc)) from None


def _write_summary(out: Path | None, summary: SourceSummary) -> None:
    """``source_summary.json``, also after a failure (what was sent until then)."""
    if out is None:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "source_summary.json", summary.to_dict())
    except OSError as exc:
        log.error("cannot write source_summary.json: %s", exc)


def _laser_to_safe(cfg: Config, source: FrameSource) -> None:
    """At the end of a run, however it ends: the activation laser to ``control.safe_power_mw``."""
    actuator = _actuator(source)
    if actuator is None:
        return
    try:
        power_mw = actuator.set(cfg.control.safe_power_mw)
    except Exception as exc:
        log.critical("cannot set %s to a safe value: %r; switch it off by hand", actuator.name, exc)
        return
    log.info("%s -> %g mW (safe)", actuator.name, power_mw)


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
        sources = getattr(source, "calibration_sources", {})  # per value: core, property, config
        return values, {k: str(sources.get(k, "Micro-Manager source")) for k in values}
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


def handshake(
    source: FrameSource,
    pusher: FramePusher,
    ctx: zmq.Context[zmq.Socket[bytes]],
    results_endpoint: str,
    timeout_s: float,
    stop_requested: Callable[[], bool],
    curve: ClientKeys | None = None,
) -> bool:
    """Describe the camera to the worker and wait for its answer before acquiring.

    Returns True once the worker is ready (model checked, warmed up), False if a signal asked
    us to stop meanwhile.

    Raises
    ------
    ModelCardError
        The worker refused its model for this camera (its message names every difference).
    TimeoutError
        No answer within ``timeout_s``.
    """
    sub = ResultSubscriber(ctx, results_endpoint, topics=("event",), curve=curve)
    try:
        deadline = time.monotonic() + timeout_s
        resend_at = 0.0
        while time.monotonic() < deadline:
            if stop_requested():
                return False
            # Re-sent now and then: a restarted worker missed the first one.
            due = time.monotonic() > resend_at
            if due and pusher.send_hello(source.camera, source.shape_px, source.live, 100):
                resend_at = time.monotonic() + HELLO_EVERY_S
            msg = sub.recv(timeout_ms=100)
            if isinstance(msg, EventMsg) and msg.name == WORKER_READY:
                log.info("worker ready (%s): starting acquisition", msg.message)
                return True
            if isinstance(msg, ErrorMsg) and msg.code == MODEL_REFUSED:
                raise ModelCardError(msg.message)
    finally:
        sub.close()
    raise TimeoutError(
        f"the worker did not answer within {timeout_s:g} s (is it running, on "
        f"{pusher.endpoint} and {results_endpoint}?)"
    )


def run_source(opts: SourceOptions) -> int:
    """Run the source until its stream ends, its limits are reached, or SIGTERM/SIGINT/SIGHUP.

    Why it ended is left in ``out/source_exit.json`` (:mod:`live_decode.pipeline.exits`).
    """
    return run_recorded("source", opts.out, lambda: _run_source(opts))


def _record_control(summary: SourceSummary, loop: ControlLoop) -> None:
    """The density loop's trips, saturations and stale episodes, for source_summary.json."""
    summary.control = loop.counts()


def _run_source(opts: SourceOptions) -> tuple[int, str]:
    exit_with_parent()
    stopped: list[int] = []
    _stop_on_signals(stopped.append)  # until the runner exists, a signal is remembered
    import torch

    # Small simulated frames run fastest on one thread and leave the cores to the worker.
    torch.set_num_threads(1)
    cfg = load_config_or_demo(opts.config)
    label = str(opts.config) if opts.config is not None else None
    with ExitStack() as stack:
        source = build_source(cfg, list(opts.replay) if opts.replay else None, config_label=label)
        stack.callback(source.close)
        stack.callback(_laser_to_safe, cfg, source)  # first thing on the way out
        if opts.out is not None:
            write_calibration(opts.out, *_calibration_of(source, cfg, label))
        recorder = _raw_recorder(cfg, source, opts)
        if recorder is not None:
            stack.callback(recorder.close)  # writes the OME-XML: pixel size, camera, indices
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        stack.callback(ctx.term)
        realtime = bool(opts.realtime or getattr(cfg.source, "realtime", False))
        lossless = not source.live and not realtime
        h, w = source.shape_px  # uint16 frames: the kernel buffer bounds frames in flight
        curve = server_curve(cfg)  # the sockets the source binds (transport.keys_dir)
        pusher = FramePusher(
            ctx,
            opts.frames_endpoint,
            lossless=lossless,
            sndhwm=cfg.transport.frame_queue,
            frame_bytes=h * w * 2,
            curve=curve,
        )
        stack.callback(pusher.close)
        preview = None
        if opts.preview_endpoint:
            preview = PreviewPublisher(ctx, opts.preview_endpoint, curve=curve)
            stack.callback(preview.close)
        loop = _control_loop(cfg, source, ctx, opts.results_endpoint, opts.out)
        if loop is not None:
            if loop.subscriber is not None:
                stack.callback(loop.subscriber.close)
            stack.callback(loop.close)
        handler = loop.handle if loop is not None else laser_handler(source)
        control = None
        if opts.control_endpoint:
            control = ControlServer(ctx, handler, opts.control_endpoint, curve=curve)
            stack.callback(control.close)
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
        stack.callback(_write_summary, opts.out, runner.summary)
        if loop is not None:  # callbacks run last-in first: this one before the summary is written
            stack.callback(_record_control, runner.summary, loop)

        def on_signal(signum: int) -> None:
            stopped.append(signum)
            runner.stop()

        _stop_on_signals(on_signal)
        if stopped:
            runner.stop()
        if opts.wait_for_worker_s is not None and not stopped:
            if opts.results_endpoint is None:
                raise ConfigError("waiting for the worker needs --results-endpoint")
            ready = handshake(
                source,
                pusher,
                ctx,
                opts.results_endpoint,
                opts.wait_for_worker_s,
                stop_requested=lambda: bool(stopped),
                curve=client_curve(cfg),
            )
            if not ready:
                return 0, "stopped before acquisition"
        summary = runner.run()
    log.info("source done: %d frames sent, %d dropped", summary.frames_sent, summary.frames_dropped)
    return 0, "end of stream sent" if summary.eos_sent else "end of stream not delivered"
