"""Attach live localization to a pymmcore-plus core the user already runs (``ld.attach``).

The user's core lives in the user's process (a script, napari-micromanager, pymmcore-gui), so
the source side of a run lives there too, on two threads of :class:`Attachment`:

- the **pump** reads the frames an :class:`~live_decode.sources.mda.MDAStream` collects from
  ``core.mda.events.frameReady`` (the MDA's thread only queues them, never waits), pushes them
  to the worker over ZeroMQ (dropping and counting when the worker is behind, as every live
  source does), offers previews, answers the control socket and ticks the density controller,
  which sets the laser property on the same core;
- the **monitor** follows the worker's results (:class:`RunState`) and its process: a worker
  that dies or stops before the end of the stream cancels the running MDA
  (``core.mda.cancel()``) and the reason is kept (:attr:`Attachment.failure`, ``summary.json``).

The worker is the ordinary ``live-decode worker`` process (model check against the camera
before the first frame, files written as it goes), so a run directory made by an attachment
holds what ``live-decode run`` leaves, plus ``mda_frames.csv``: what the MDA said about every
frame read (sequence, event index, runner time, exposure, camera, sent or dropped).
"""

from __future__ import annotations

import logging
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from live_decode.config import Config, MMSourceConfig
from live_decode.control import ControlLoop
from live_decode.endpoints import RunEndpoints
from live_decode.errors import ConfigError, LiveDecodeError, ModelCardError
from live_decode.inference.worker import END_OF_STREAM
from live_decode.io.run_dir import endpoints_of_this_process, write_endpoints
from live_decode.pipeline.attach_pump import FramePump
from live_decode.pipeline.build import (
    client_curve,
    endpoints_for,
    load_config_or_demo,
    model_path,
    server_curve,
)
from live_decode.pipeline.exits import EXIT_BAD_INPUT, EXIT_FAILED, classify, read_exit
from live_decode.pipeline.run_dir import prepare_run_dir
from live_decode.pipeline.source_process import handshake
from live_decode.pipeline.supervisor import (
    READY_TIMEOUT_S,
    STOP_WAIT_S,
    Outcome,
    RunResult,
    RunState,
    spawn_child,
    write_summary,
)
from live_decode.sources.mda import DEFAULT_QUEUE_FRAMES, MDAStream
from live_decode.sources.mm_camera import MMCamera, calibration_from_config
from live_decode.sources.mm_laser import MMPropertyActuator
from live_decode.sources.runner import laser_handler
from live_decode.strict_json import write_json
from live_decode.transport.control import ControlServer
from live_decode.transport.frames import FramePusher
from live_decode.transport.preview import PreviewPublisher
from live_decode.transport.results import ResultSubscriber

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

log = logging.getLogger("live_decode.pipeline.attach")


@dataclass(frozen=True)
class AttachOptions:
    """What :class:`Attachment` is asked to do (see :func:`live_decode.attach`)."""

    config: Path | None = None
    out: Path | None = None
    model: Path | None = None
    camera: str | None = None
    laser_device: str | None = None
    laser_property: str | None = None
    sequences: int | None = None
    queue_frames: int = DEFAULT_QUEUE_FRAMES
    ignore_model_mismatch: bool = False
    overwrite: bool = False
    ready_timeout_s: float = READY_TIMEOUT_S


class Attachment:
    """Live localization of every frame a core's MDA acquires, until :meth:`close`.

    Start it with :meth:`start` (or use it as a context manager): the worker process starts,
    checks its model against the core's camera and warms up; from then on every MDA run on
    ``core`` streams into it. :meth:`close` ends the stream, waits for the worker to localize
    what it holds, sets the laser to ``control.safe_power_mw`` and writes ``summary.json``.
    """

    def __init__(self, core: CMMCorePlus, opts: AttachOptions) -> None:
        self.core = core
        self.options = opts
        self.cfg: Config = load_config_or_demo(opts.config)
        self.model = model_path(self.cfg, opts.model)  # fail fast
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out: Path = opts.out or Path("runs") / stamp
        self.state = RunState()
        self.failure: str | None = None
        self.result: RunResult | None = None
        self.endpoints: RunEndpoints = endpoints_for(self.cfg)
        self.stream: MDAStream | None = None
        self.loop: ControlLoop | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self.pump: FramePump | None = None
        self._pump: threading.Thread | None = None
        self._monitor: threading.Thread | None = None
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._outcome: Outcome | None = None

    # ------------------------------------------------------------------ start
    def start(self) -> Attachment:
        """Start the worker, describe the camera, wait until it is ready; then listen.

        Raises
        ------
        ModelCardError
            The worker refused its model for this camera (every difference named).
        LiveDecodeError
            A bad config, camera or laser; the worker did not answer in time.
        """
        if self._ctx is not None:
            raise RuntimeError("this attachment was started already; call ld.attach again")
        prepare_run_dir(self.out, overwrite=self.options.overwrite)
        try:
            self._open()
        except BaseException:
            self._teardown()
            raise
        assert self.pump is not None
        self._pump = threading.Thread(target=self.pump.run, name="ld-attach-pump", daemon=True)
        self._monitor = threading.Thread(
            target=self._run_monitor, name="ld-attach-monitor", daemon=True
        )
        self._pump.start()
        self._monitor.start()
        return self

    def _laser(self) -> MMPropertyActuator | None:
        src, opts = self.cfg.source, self.options
        device = opts.laser_device
        prop = opts.laser_property
        if isinstance(src, MMSourceConfig):
            device = device or src.laser_device
            prop = prop or src.laser_property
        if not device:
            return None
        return MMPropertyActuator(self.core, device, prop or "Power")

    def _open(self) -> None:
        cfg, opts, core = self.cfg, self.options, self.core
        if core.mda.is_running():
            raise LiveDecodeError(
                "an MDA is running on this core: attach live_decode before starting it"
            )
        label = opts.camera
        if label is None and isinstance(cfg.source, MMSourceConfig):
            label = cfg.source.camera
        defaults, overrides = calibration_from_config(cfg)
        camera = MMCamera(core, label, defaults=defaults, overrides=overrides)
        try:
            laser = self._laser()
        except BaseException:
            camera.close()
            raise
        self.stream = MDAStream(
            core, camera, laser=laser, queue_frames=opts.queue_frames, sequences=opts.sequences
        )
        self.stream.stop()  # nothing is taken before the worker is ready
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._ctx = ctx
        ep = self.endpoints
        h, w = self.stream.shape_px
        curve = server_curve(cfg)
        assert ep.frames is not None and ep.results is not None
        pusher = FramePusher(
            ctx, ep.frames, sndhwm=cfg.transport.frame_queue, frame_bytes=h * w * 2, curve=curve
        )
        preview = control = None
        try:
            if ep.preview is not None:
                preview = PreviewPublisher(ctx, ep.preview, curve=curve)
            if laser is not None:
                self.loop = self._control_loop(ctx, laser)
            handler = self.loop.handle if self.loop is not None else laser_handler(self.stream)
            if ep.control is not None:
                control = ControlServer(ctx, handler, ep.control, curve=curve)
            self.pump = FramePump(
                self.stream,
                pusher,
                self.out,
                worker_alive=self._worker_alive,
                on_failure=self._fail,
                preview=preview,
                control=control,
                loop=self.loop,
            )
        except BaseException:
            for end in (control, preview, pusher):
                if end is not None:
                    end.close()
            raise
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        write_endpoints(
            self.out, endpoints_of_this_process(ep, curve=cfg.transport.keys_dir is not None)
        )
        self.worker = spawn_child(self._worker_args(), self.out / "logs" / "worker.log")
        ready = handshake(
            self.stream,
            pusher,
            ctx,
            ep.results,
            opts.ready_timeout_s,
            stop_requested=lambda: self.worker is None or self.worker.poll() is not None,
            curve=client_curve(cfg),
        )
        if not ready:  # the worker ended before it answered
            assert self.worker is not None
            ex = classify("worker", int(self.worker.wait()), read_exit(self.out, "worker"))
            if ex.status == "refused":  # its refusal message may not have reached us
                raise ModelCardError(ex.reason)
            raise LiveDecodeError(f"the worker ended before it was ready: {ex.reason}")
        self.stream.resume()
        log.info("attached to camera %r: every MDA frame goes to the worker", camera.label)

    def _control_loop(
        self, ctx: zmq.Context[zmq.Socket[bytes]], laser: MMPropertyActuator
    ) -> ControlLoop:
        """The density controller on the user's laser, fed by the worker's stats."""
        assert self.endpoints.results is not None
        sub = ResultSubscriber(
            ctx, self.endpoints.results, topics=("stats", "event"), curve=client_curve(self.cfg)
        )
        try:
            return ControlLoop(self.cfg.control, laser, sub, run_dir=self.out)
        except ValueError as exc:  # a safe power outside the laser's limits
            sub.close()
            raise ConfigError(str(exc)) from None

    def _worker_args(self) -> list[str]:
        a = ["worker"]
        if self.options.config is not None:
            a.append(str(self.options.config))
        a += [
            *RunEndpoints(frames=self.endpoints.frames, results=self.endpoints.results).as_args(),
            "--out",
            str(self.out),
            "--model",
            str(self.model),
        ]
        if self.options.ignore_model_mismatch:
            a.append("--ignore-model-mismatch")
        return a

    # ------------------------------------------------------------------ monitor thread
    def _run_monitor(self) -> None:
        ctx = self._ctx
        assert ctx is not None and self.endpoints.results is not None
        sub = ResultSubscriber(
            ctx, self.endpoints.results, topics=("stats", "event"), curve=client_curve(self.cfg)
        )
        try:
            while True:
                msg = sub.recv(timeout_ms=200)
                while msg is not None:
                    self.state.absorb(msg)
                    msg = sub.recv(timeout_ms=0)
                if not self._worker_alive():
                    pump_done = self.pump is not None and self.pump.eos_sent.is_set()
                    if not pump_done or not self.state.eos:
                        reason = self._worker_failure()
                        if reason is not None:
                            self._fail(reason)
                    # the results still in flight
                    while (msg := sub.recv(timeout_ms=100)) is not None:
                        self.state.absorb(msg)
                    return
        finally:
            sub.close(linger_ms=0)

    def _worker_alive(self) -> bool:
        return self.worker is not None and self.worker.poll() is None

    def _worker_failure(self) -> str | None:
        """Why the worker ended, if that was not the end of our stream (None: it was)."""
        if self.worker is None or self.worker.poll() is None:
            return None
        ex = classify("worker", int(self.worker.returncode), read_exit(self.out, "worker"))
        if ex.status == "done" and (ex.reason == END_OF_STREAM or self._closing.is_set()):
            return None
        if ex.status == "refused":
            with self._lock:
                self._outcome = self._outcome or Outcome("refused", EXIT_BAD_INPUT, ex.reason)
        if ex.status == "done":
            return f"the worker stopped before the end of the stream ({ex.reason})"
        return ex.reason

    def _fail(self, reason: str) -> None:
        """The first failure ends the stream and cancels the running MDA, with its reason."""
        with self._lock:
            if self.failure is not None:
                return
            self.failure = reason
            self._outcome = self._outcome or Outcome("failed", EXIT_FAILED, reason)
        self.state.note(reason)
        if self.stream is not None:
            self.stream.stop()
        if self.core.mda.is_running():
            log.error("%s: cancelling the MDA", reason)
            self.core.mda.cancel()
        else:
            log.error("%s", reason)

    # ------------------------------------------------------------------ end
    @property
    def running(self) -> bool:
        """True while frames are streamed to a live worker."""
        return (
            self._pump is not None
            and self._pump.is_alive()
            and self.failure is None
            and self._worker_alive()
        )

    def close(self) -> RunResult:
        """End the stream; wait for the worker; laser to its safe value; ``summary.json``.

        Frames acquired after this call are not localized (let the MDA finish first:
        ``core.run_mda(seq).join()``). Idempotent: later calls return the same result.
        """
        if self.result is not None:
            return self.result
        self._closing.set()
        if self.stream is not None:
            self.stream.stop()
        if self._pump is not None:
            self._pump.join()
        self._wait_worker()
        if self._monitor is not None:
            self._monitor.join(10)
        self._laser_to_safe()
        self._teardown()
        self.result = self._finish()
        return self.result

    def _wait_worker(self) -> None:
        worker = self.worker
        if worker is None:
            return
        try:
            worker.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            worker.terminate()  # it localizes what it holds, closes the files, exits
            try:
                worker.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()

    def _laser_to_safe(self) -> None:
        laser = self.stream.laser if self.stream is not None else None
        if laser is None:
            return
        try:
            power_mw = laser.set(self.cfg.control.safe_power_mw)
        except Exception as exc:
            log.critical(
                "cannot set %s to a safe value: %r; switch it off by hand", laser.name, exc
            )
            return
        log.info("%s -> %g mW (safe)", laser.name, power_mw)

    def _teardown(self) -> None:
        """Close what was opened (also after a failed start). Idempotent."""
        if self.loop is not None:
            if self.pump is not None:
                self.pump.summary.control = self.loop.counts()
            self.loop.close()
            if self.loop.subscriber is not None:
                self.loop.subscriber.close()
        if self.pump is not None:
            self.pump.close()
        if self.stream is not None:
            self.stream.close()
        if self.worker is not None and self.worker.poll() is None:  # a failed start
            self.worker.terminate()
            try:
                self.worker.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def _finish(self) -> RunResult:
        from live_decode.pipeline.plots import plot_run

        outcome = self._outcome or Outcome("completed", 0)
        try:
            if self.pump is not None:
                write_json(self.out / "source_summary.json", self.pump.summary.to_dict())
            summary = write_summary(
                self.out, self.state, outcome, worker_died=self.failure is not None
            )
            summary["mda"] = self._mda_summary()
            write_json(self.out / "summary.json", summary)
        except OSError as exc:
            reason = f"cannot write {self.out / 'summary.json'}: {exc}"
            outcome = Outcome("failed", EXIT_FAILED, reason)
            summary = {"status": "failed", "reason": reason, "exit_code": EXIT_FAILED}
        try:
            plot_run(self.out, self.state.trace, self.cfg)
        except OSError as exc:
            log.error("cannot write the plots: %s", exc)
        return RunResult(self.out, summary, outcome.exit_code, outcome.status, outcome.reason)

    def _mda_summary(self) -> dict[str, object]:
        counts = self.stream.counts if self.stream is not None else None
        if counts is None:
            return {}
        return {
            "frames_seen": counts.frames_seen,
            "frames_dropped_before_sending": counts.frames_dropped,
            "frames_other_camera": counts.frames_other_camera,
            "sequences_started": counts.sequences_started,
            "sequences_finished": counts.sequences_finished,
            "sequences_canceled": counts.sequences_canceled,
            "event_axes": sorted(counts.event_axes),
            "cancelled_because": self.failure,
        }

    def __enter__(self) -> Attachment:
        if self._ctx is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
