"""The supervisor of one live run: source, worker (and viewer) as processes.

It knows why each child ended (:mod:`live_decode.pipeline.exits`): a crashed worker is restarted
(the new one appends to the same files; frames lost meanwhile are counted), a refused model or a
bad input ends the run with exit 2, a dead source ends it with exit 1, and SIGINT, SIGTERM and
SIGHUP stop it cleanly (the source puts the laser to its safe value first; the worker localizes
what it has and closes the files). ``summary.json`` says how the run ended (``status``,
``reason``, ``exit_code``). What it shows while it runs is the caller's business:
``supervise(on_update=...)`` hands it the :class:`RunState` a few times a second.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import zmq

from live_decode.config import ReplaySourceConfig, SimulatedSourceConfig
from live_decode.control.stop import stop_reason
from live_decode.display import display_available
from live_decode.endpoints import RunEndpoints
from live_decode.errors import LiveDecodeError, ModelCardError
from live_decode.inference.compat import check_compatible, refuse
from live_decode.inference.worker import END_OF_STREAM, MISMATCH_NAME
from live_decode.io.run_dir import endpoints_of_this_process, write_endpoints
from live_decode.messages import (
    CameraMeta,
    EosMsg,
    ErrorMsg,
    FrameStats,
    StatsMsg,
    WorkerStats,
)
from live_decode.model.card import read_card
from live_decode.pipeline.build import (
    build_source,
    client_curve,
    endpoints_for,
    load_config_or_demo,
    model_path,
)
from live_decode.pipeline.density_trace import DensityTrace
from live_decode.pipeline.exits import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    PARENT_PID_ENV,
    ChildExit,
    classify,
    clear_exit,
    read_exit,
    signal_name,
)
from live_decode.pipeline.quality_monitor import QualityMonitor
from live_decode.pipeline.run_dir import prepare_run_dir
from live_decode.sources.base import camera_from_config
from live_decode.strict_json import write_json
from live_decode.transport.results import ResultSubscriber

log = logging.getLogger("live_decode.pipeline.supervisor")
MAX_RESTARTS = 3
POLL_MS = 200  # a child's death is noticed within this (plus one results batch)
QUIET_S = 1.5  # after the source died: the worker's last stats this long ago -> stop it
ORPHAN_GRACE_S = 15.0  # a worker quiet this long after the source ended normally is stopped
READY_TIMEOUT_S = 600.0  # longest the source waits for the worker to load and warm up
STOP_WAIT_S = 30.0  # longest wait for a child to finish after being asked to stop


@dataclass(frozen=True)
class RunOptions:
    """What one live run is asked to do (``live-decode run`` / ``ld.run``).

    ``config`` None runs the embedded demo config; ``out`` None makes ``runs/<time>``.
    ``overwrite`` allows an ``out`` that holds an earlier run's results (they are deleted).
    """

    config: Path | None = None
    frames: int | None = None
    seconds: float | None = None
    out: Path | None = None
    headless: bool = False
    model: Path | None = None
    replay: tuple[Path, ...] | None = None
    realtime: bool = False
    ignore_model_mismatch: bool = False
    record_raw: bool = True  # a live source keeps its frames as raw.ome.tif (source.record_raw)
    overwrite: bool = False


@dataclass
class RunState:
    """What the supervisor saw on the results channel: running totals, never per-frame lists."""

    frames_localized: int = 0
    localizations: int = 0
    density_sum: float = 0.0
    recent: deque[FrameStats] = field(default_factory=lambda: deque(maxlen=50))
    trace: DensityTrace = field(default_factory=DensityTrace)
    worker: WorkerStats | None = None
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=100))
    n_errors: int = 0
    restarts: int = 0
    eos: bool = False
    gave_up: bool = False
    started: float = field(default_factory=time.perf_counter)
    last_stats: float = field(default_factory=time.perf_counter)
    stop_reason: str | None = None  # why control.stop_when ended the acquisition
    quality: dict[str, object] = field(default_factory=dict)  # the quality monitor's summary

    def absorb(self, msg: object) -> None:
        if isinstance(msg, StatsMsg):
            self.last_stats = time.perf_counter()
            for s in msg.frame_stats:
                self.frames_localized += 1
                self.localizations += s.count
                self.density_sum += s.density_per_um2
                self.recent.append(s)
                self.trace.add(s.frame, s.density_per_um2)
            self.worker = msg.worker
        elif isinstance(msg, ErrorMsg):  # notices (EventMsg) are no errors: not counted
            self.note(f"{msg.code}: {msg.message}")
        elif isinstance(msg, EosMsg):
            self.eos = True

    def note(self, error: str) -> None:
        """Keep an error line (the last 100 are kept; all are counted)."""
        self.errors.append(error)
        self.n_errors += 1

    def recent_density_per_um2(self, n: int = 50) -> float | None:
        """Mean density of the last ``n`` (≤ 50) frames localized (None before the first)."""
        recent = [s.density_per_um2 for s in list(self.recent)[-n:]]
        return float(np.mean(recent)) if recent else None

    @property
    def mean_density_per_um2(self) -> float | None:
        return self.density_sum / self.frames_localized if self.frames_localized else None


RunStatus = Literal["completed", "failed", "refused", "bad_input", "interrupted"]


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``status``, the ``reason`` (None when it completed) and the exit code."""

    status: RunStatus
    exit_code: int
    reason: str | None = None


def _outcome_of(child: ChildExit) -> Outcome:
    """The run's outcome when ``child`` ended it by failing."""
    if child.status == "refused":
        return Outcome("refused", EXIT_BAD_INPUT, child.reason)
    if child.status == "bad_input":
        return Outcome("bad_input", EXIT_BAD_INPUT, child.reason)
    return Outcome("failed", EXIT_FAILED, child.reason)


def spawn_child(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """A ``live-decode`` child in its own process group (a Ctrl-C reaches the supervisor only,
    which stops the children in order), stopped by the kernel if the supervisor dies."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_PID_ENV: str(os.getpid())}
    with open(log_path, "ab") as logf:
        return subprocess.Popen(
            [sys.executable, "-m", "live_decode", *args],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            process_group=0,
        )


class Supervisor:
    """Owns the child processes of one run and decides how the run ended."""

    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts
        self.cfg = load_config_or_demo(opts.config)
        self.model = model_path(self.cfg, opts.model)  # fail fast, before anything starts
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out: Path = opts.out or Path("runs") / stamp
        prepare_run_dir(self.out, overwrite=opts.overwrite)
        self.ep: RunEndpoints = endpoints_for(self.cfg)
        self.common = [] if opts.config is None else [str(opts.config)]
        self.state = RunState()
        self.source: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.viewer: subprocess.Popen[bytes] | None = None
        self._viewer_reported = False
        self.outcome: Outcome | None = None  # set by the first thing that ends the run
        self.worker_deaths: list[ChildExit] = []
        self.signal: int | None = None
        self._worker_started = time.perf_counter()
        self._source_ended: float | None = None
        self._source_exit: ChildExit | None = None
        self._worker_exit: ChildExit | None = None
        self._stopping = False
        self.monitor: QualityMonitor | None = None
        if self.cfg.quality.enabled:
            self.monitor = QualityMonitor(self.cfg, self.ep.results, self.ep.preview)
        self._worker_asked = False
        src = self.cfg.source
        replay = bool(opts.replay) or isinstance(src, ReplaySourceConfig)
        realtime = opts.realtime or bool(getattr(src, "realtime", False))
        self.lossless = replay and not realtime  # a replay that waits: every frame must arrive

    # ------------------------------------------------------------------ children
    def _worker_args(self, resume: bool) -> list[str]:
        a = [
            "worker",
            *self.common,
            *RunEndpoints(frames=self.ep.frames, results=self.ep.results).as_args(),
            "--out",
            str(self.out),
            "--model",
            str(self.model),
        ]
        if resume:
            a.append("--resume")
        if self.opts.ignore_model_mismatch:
            a.append("--ignore-model-mismatch")
        return a

    def _source_args(self) -> list[str]:
        a = ["source", *self.common, *self.ep.as_args(), "--out", str(self.out)]
        if self.opts.frames is not None:
            a += ["--frames", str(self.opts.frames)]
        if self.opts.seconds is not None:
            a += ["--seconds", str(self.opts.seconds)]
        if self.opts.replay:
            a += ["--replay", *map(str, self.opts.replay)]
        if self.opts.realtime:
            a.append("--realtime")
        a += ["--wait-for-worker", str(READY_TIMEOUT_S)]
        if not self.opts.record_raw:
            a.append("--no-raw")
        return a

    def _spawn_worker(self, resume: bool) -> None:
        clear_exit(self.out, "worker")
        self._worker_asked = False
        self.worker = spawn_child(self._worker_args(resume), self.out / "logs" / "worker.log")
        self._worker_started = time.perf_counter()

    def check_model(self) -> Outcome | None:
        """Check the model against the camera before anything starts (torch-free).

        For a simulated or replayed source the camera is known from the config or the movie
        files; a live camera is described by its source process (``hello``), checked by the
        worker before acquisition. Returns the outcome that ends the run (model refused, movie
        unreadable), or None to go on.
        """
        label = str(self.opts.config) if self.opts.config is not None else None
        try:
            described = self._camera_before_start(label)
            if described is None:
                return None
            camera, shape_px = described
            card = read_card(self.model)
            found = check_compatible(
                card, camera, self.cfg, frame_shape_px=shape_px, config_name=label
            )
            override = self.opts.ignore_model_mismatch or self.cfg.inference.ignore_model_mismatch
            refuse(card, found, override)
        except ModelCardError as exc:
            return Outcome("refused", EXIT_BAD_INPUT, str(exc))
        except LiveDecodeError as exc:
            return Outcome("bad_input", EXIT_BAD_INPUT, str(exc))
        return None

    def _camera_before_start(self, label: str | None) -> tuple[CameraMeta, tuple[int, int]] | None:
        src = self.cfg.source
        if self.opts.replay or isinstance(src, ReplaySourceConfig):
            replay = list(self.opts.replay) if self.opts.replay else None
            source = build_source(self.cfg, replay, config_label=label)
            try:
                return source.camera, source.shape_px
            finally:
                source.close()
        if isinstance(src, SimulatedSourceConfig):
            h, w = self.cfg.microscope.fov_px
            return camera_from_config(self.cfg), (int(h), int(w))
        return None

    def start(self) -> None:
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        keys = self.cfg.transport.keys_dir
        ep = self.ep
        mine = endpoints_of_this_process(ep, curve=keys is not None)
        write_endpoints(self.out, mine)  # `live-decode view RUN_DIR` joins from it
        log.info(
            "endpoints: frames %s, results %s, preview %s, control %s (in %s/endpoints.json); "
            "watch with: live-decode view %s",
            ep.frames, ep.results, ep.preview, ep.control, self.out, self.out,
        )  # fmt: skip
        if self.monitor is not None:
            self.monitor.start()
        self._spawn_worker(resume=False)
        clear_exit(self.out, "source")
        self.source = spawn_child(self._source_args(), logs / "source.log")
        if not self.opts.headless and display_available():
            self.viewer = spawn_child(
                [
                    "view",
                    self.ep.results.rsplit(":", 1)[0].split("//")[1],
                    *replace(self.ep, frames=None).as_args(),
                    "--model",
                    str(self.model),
                    "--target",
                    str(self.cfg.control.target_density_per_um2),
                    *(["--keys", str(keys)] if keys is not None else []),
                ],
                logs / "viewer.log",
            )

    def _check_viewer(self) -> None:
        """A viewer that could not start (or crashed) is said on the console and in the summary;
        the run goes on without it."""
        if self.viewer is None or self._viewer_reported:
            return
        code = self.viewer.poll()
        if code is None or code == 0:
            return
        self._viewer_reported = True
        lines = (self.out / "logs" / "viewer.log").read_text(errors="replace").splitlines()
        last = next((ln for ln in reversed(lines) if ln.strip()), "")
        note = f"the viewer exited with {code} ({last.strip() or 'no message'}); the run goes on"
        note += f" without it: reopen it with `live-decode view {self.out}`"
        log.warning("%s", note)
        self.state.note(note)

    def _end(self, outcome: Outcome) -> None:
        """The first reason to end the run is the one kept."""
        if self.outcome is None:
            self.outcome = outcome
            if outcome.reason:
                log.error("%s", outcome.reason)
                self.state.note(outcome.reason)

    def _stop_source(self) -> None:
        if self.source is not None and self.source.poll() is None:
            self.source.terminate()  # it puts the laser to safe, sends end of stream, exits

    def _stop_worker(self) -> None:
        """Ask the worker once to stop (a second SIGTERM could kill it while it closes files)."""
        if self.worker is not None and self.worker.poll() is None and not self._worker_asked:
            self._worker_asked = True
            self.worker.terminate()  # it localizes what it holds, closes the files, exits

    # ------------------------------------------------------------------ what happened
    def _check_worker(self) -> None:
        assert self.worker is not None
        code = self.worker.poll()
        if code is None or self._worker_exit is not None:
            return
        ex = classify("worker", code, read_exit(self.out, "worker"))
        if ex.status == "done":
            self._worker_exit = ex
            self.state.eos = self.state.eos or ex.reason == END_OF_STREAM
            if self.state.eos or self._stopping:
                return
            if self.source is not None and self.source.poll() is None:
                # It stopped before the end of the stream (idle timeout) with the source running.
                reason = f"the worker stopped before the end of the stream ({ex.reason})"
                self._end(Outcome("failed", EXIT_FAILED, reason))
                self._stop_source()
            return
        self.worker_deaths.append(ex)
        source_alive = self.source is not None and self.source.poll() is None
        if not ex.restartable or self._stopping:
            self._worker_exit = ex
            self._end(_outcome_of(ex))
            self._stop_source()
            return
        if not source_alive:
            # The source has finished: a new worker could never receive a frame; what the dead
            # one still had queued is counted as lost (summary: frames_lost_on_restart).
            self._worker_exit = ex
            self._end(
                Outcome(
                    "failed",
                    EXIT_FAILED,
                    f"{ex.reason} after the source had finished; not restarted, "
                    "the frames it still had queued are lost (frames_lost_on_restart)",
                )
            )
            return
        if self.state.restarts >= MAX_RESTARTS:
            self._worker_exit = ex
            self.state.gave_up = True
            self._end(
                Outcome(
                    "failed",
                    EXIT_FAILED,
                    f"the worker died {MAX_RESTARTS + 1} times (last: {ex.reason}); giving up",
                )
            )
            self._stop_source()
            return
        self.state.restarts += 1
        log.warning("%s: restarting it (%d)", ex.reason, self.state.restarts)
        self.state.note(f"{ex.reason}; restarted")
        self._spawn_worker(resume=True)

    def _check_source(self) -> None:
        assert self.source is not None
        code = self.source.poll()
        if code is None:
            return
        now = time.perf_counter()
        if self._source_exit is None:
            self._source_exit = classify("source", code, read_exit(self.out, "source"))
            self._source_ended = now
            if self._source_exit.status != "done":
                self._end(_outcome_of(self._source_exit))
        assert self._source_ended is not None
        worker_alive = self.worker is not None and self.worker.poll() is None
        if not worker_alive:
            return
        busy = max(self._source_ended, self.state.last_stats, self._worker_started)
        if self._source_exit.status != "done":
            # No end of stream will come: once the worker has localized what it holds, stop it.
            if now - busy > QUIET_S:
                self._stop_worker()
        elif now - busy > ORPHAN_GRACE_S and not self.state.eos:
            # A restarted worker that connected after the source ended never gets end of stream.
            self.state.note("the worker missed the end of stream; stopped it")
            self._stop_worker()

    def _check_stop_when(self) -> None:
        """Auto-stop: end the acquisition cleanly (the source sends end of stream) once met."""
        if self.state.stop_reason is not None or self._stopping:
            return
        reason = stop_reason(
            self.cfg.control.stop_when,
            frc_nm=self.monitor.frc_nm if self.monitor is not None else None,
            localizations=self.state.localizations,
            minutes=(time.perf_counter() - self.state.started) / 60.0,
        )
        if reason is None:
            return
        self.state.stop_reason = reason
        log.info("auto-stop (control.stop_when): %s", reason)
        self._stop_source()  # Micro-Manager: the sequence stops; simulated/replay: end of stream

    def finish_quality(self) -> None:
        """The quality monitor's last computation and files (``quality.csv`` ...)."""
        if self.monitor is not None:
            self.state.quality = self.monitor.finish(self.out)

    def _check_signal(self) -> None:
        if self.signal is None or self._stopping:
            return
        self._stopping = True
        log.info("%s: stopping; finishing the frames in flight ...", signal_name(self.signal))
        self._stop_source()
        if self.viewer is not None and self.viewer.poll() is None:
            self.viewer.terminate()

    def supervise(self, on_update: Callable[[RunState], None] | None = None) -> int:
        """Watch the children until the run ends; ``on_update(state)`` after each poll.

        Returns the run's exit code (see :mod:`live_decode.pipeline.exits`); the outcome is in
        ``self.outcome``.
        """
        assert self.worker is not None and self.source is not None
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sub = ResultSubscriber(
            ctx, self.ep.results, topics=("stats", "event"), curve=client_curve(self.cfg)
        )
        try:
            while True:
                msg = sub.recv(timeout_ms=POLL_MS)
                while msg is not None:
                    self.state.absorb(msg)
                    msg = sub.recv(timeout_ms=0)
                if on_update is not None:
                    on_update(self.state)
                self._check_signal()
                self._check_stop_when()
                self._check_worker()
                self._check_source()
                self._check_viewer()
                both_ended = self.worker.poll() is not None and self.source.poll() is not None
                if both_ended and self._worker_exit is not None:
                    break
        finally:
            sub.close()
            ctx.term()
            self.wait()
        self.outcome = self._final_outcome()
        return self.outcome.exit_code

    def _final_outcome(self) -> Outcome:
        if self.outcome is not None:
            return self.outcome
        if self.signal is not None:
            return Outcome(
                "interrupted", 128 + self.signal, f"stopped by {signal_name(self.signal)}"
            )
        if self.lossless and self.worker_deaths:
            worker = _read_json(self.out / "worker_summary.json")
            source = _read_json(self.out / "source_summary.json")
            lost = _int(worker.get("frames_lost_on_restart")) + frames_never_localized(
                source, worker
            )
            if lost:
                return Outcome(
                    "failed",
                    EXIT_FAILED,
                    f"{lost} of {_int(source.get('frames_sent'))} frames of the replay were never "
                    f"localized: they were queued in a worker that died "
                    f"({self.worker_deaths[0].reason}); replay again into a new --out",
                )
        return Outcome("completed", EXIT_OK)

    def wait(self) -> None:
        """Every child ended: asked to stop, then killed after :data:`STOP_WAIT_S`."""
        self._stop_source()
        for proc in (self.source, self.worker):
            if proc is None:
                continue
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.viewer is not None and self.viewer.poll() is None:
            self.viewer.terminate()


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def frames_never_localized(source: dict[str, Any], worker: dict[str, Any]) -> int:
    """Frames the source sent that no worker localized, rejected or counted as lost."""
    accounted = (
        _int(worker.get("frames_processed"))
        + _int(worker.get("frames_lost_on_restart"))
        + _int(worker.get("rejected_messages"))
    )
    return max(0, _int(source.get("frames_sent")) - accounted)


def write_summary(
    out: Path,
    state: RunState,
    outcome: Outcome | None = None,
    *,
    live: bool = True,
    worker_died: bool = False,
) -> dict[str, object]:
    """``summary.json`` (strict JSON, written atomically) from the children's summaries and what
    the supervisor saw; ``live=False`` (offline) leaves out latency, drops and restarts.

    ``worker_died``: a worker ended without localizing its queue, so the frames the source sent
    and nobody accounted for are counted in ``frames_lost_on_restart``.
    """
    worker = _read_json(out / "worker_summary.json")
    source = _read_json(out / "source_summary.json")
    lost = _int(worker.get("frames_lost_on_restart"))
    if worker_died:
        never = frames_never_localized(source, worker)
        if never:
            state.note(f"{never} frames sent to a worker that died were never localized")
        lost += never
    outcome = outcome or Outcome("completed", EXIT_OK)
    summary: dict[str, object] = {
        "status": outcome.status,
        "reason": outcome.reason,
        "exit_code": outcome.exit_code,
        "frames_in": source.get("frames_read"),
        "frames_sent": source.get("frames_sent"),
        "frames_processed": worker.get("frames_processed"),
        "frames_dropped": source.get("frames_dropped"),
        "frames_lost_on_restart": lost,
        "frames_rejected": worker.get("rejected_messages"),
        "localizations": worker.get("localizations"),
        "mean_density_per_um2": state.mean_density_per_um2,
        "throughput_fps": worker.get("fps"),
        "latency_ms_p50": worker.get("latency_ms_p50"),
        "latency_ms_p99": worker.get("latency_ms_p99"),
        "worker_restarts": state.restarts,
        # The density loop's trips, saturations and stale episodes (None without a loop).
        "control": source.get("control"),
        "model_mismatches": worker.get("mismatches", []),
        **state.quality,
        "stopped_because": state.stop_reason,
        "model_mismatch": _read_json(out / MISMATCH_NAME) or None,
        "errors": list(state.errors),
        "errors_total": state.n_errors,
        "wall_s": round(time.perf_counter() - state.started, 2),
    }
    if not live:
        for key in (
            "frames_dropped",
            "frames_lost_on_restart",
            "latency_ms_p50",
            "latency_ms_p99",
            "worker_restarts",
            "control",
        ):
            del summary[key]
    write_json(out / "summary.json", summary)
    return summary


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run: its directory, ``summary.json``'s content and the exit status.

    ``status``/``reason``: how it ended (``completed`` with no reason, or why not).
    """

    out: Path
    summary: dict[str, object]
    exit_code: int
    status: RunStatus = "completed"
    reason: str | None = None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_signals(sup: Supervisor) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP ask ``sup`` to stop cleanly (main thread only)."""

    def handler(signum: int, _: FrameType | None) -> None:
        if sup.signal is None:
            sup.signal = signum

    try:
        old = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread: the caller handles signals
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_pipeline(
    opts: RunOptions, on_update: Callable[[RunState], None] | None = None
) -> RunResult:
    """Start, supervise and finish one live run; write ``summary.json`` and the plots.

    Raises :class:`~live_decode.errors.LiveDecodeError` before anything starts (bad config,
    model not found, a run directory that holds an earlier run); after that, how the run ended
    is in the result (``exit_code``, ``status``, ``reason``) and in ``summary.json``.
    """
    sup = Supervisor(opts)
    refused = sup.check_model()
    if refused is not None:  # nothing was started
        sup.state.note(refused.reason or refused.status)
        summary = write_summary(sup.out, sup.state, refused)
        return RunResult(sup.out, summary, refused.exit_code, refused.status, refused.reason)
    with stop_signals(sup):
        sup.start()
        code = sup.supervise(on_update)
        return finish_run(sup, code)


def finish_run(sup: Supervisor, code: int) -> RunResult:
    """After :meth:`Supervisor.supervise` returned ``code``: ``summary.json``, plots, result."""
    from live_decode.pipeline.plots import plot_run

    assert sup.outcome is not None
    sup.finish_quality()
    try:
        summary = write_summary(
            sup.out, sup.state, sup.outcome, worker_died=bool(sup.worker_deaths)
        )
    except OSError as exc:  # a full disk: the files written so far stay as they are
        reason = f"cannot write {sup.out / 'summary.json'}: {exc}"
        if sup.outcome.reason:
            reason = f"{sup.outcome.reason}; {reason}"
        sup.outcome = Outcome("failed", EXIT_FAILED, reason)
        code = EXIT_FAILED
        summary = {"status": "failed", "reason": reason, "exit_code": code}
    try:
        plot_run(sup.out, sup.state.trace, sup.cfg)
    except OSError as exc:
        log.error("cannot write the plots: %s", exc)
    return RunResult(sup.out, summary, code, sup.outcome.status, sup.outcome.reason)
