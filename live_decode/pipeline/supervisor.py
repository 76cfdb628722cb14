"""The supervisor of one live run: source, worker (and viewer) as processes.

The supervisor restarts a worker that dies (the new one appends to the same files and the frames
lost meanwhile are reported as a gap), stops everything cleanly on Ctrl-C, and finally writes
``summary.json`` into the run directory. What it shows while it runs is the caller's business:
``supervise(on_update=...)`` hands it the :class:`RunState` a few times a second.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import zmq

from live_decode.messages import EosMsg, ErrorMsg, FrameStats, StatsMsg, WorkerStats
from live_decode.pipeline.build import Endpoints, endpoints_for, load_config_or_demo, model_path
from live_decode.transport.results import ResultSubscriber

log = logging.getLogger("live_decode.pipeline.supervisor")
MAX_RESTARTS = 3
ORPHAN_GRACE_S = 15.0  # a restarted worker idle this long after the source ended is stopped


@dataclass(frozen=True)
class RunOptions:
    """What one live run is asked to do (``live-decode run`` / ``ld.run``).

    ``config`` None runs the embedded demo config; ``out`` None makes ``runs/<time>``.
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


@dataclass
class RunState:
    """What the supervisor saw on the results channel."""

    stats: list[FrameStats] = field(default_factory=list)
    worker: WorkerStats | None = None
    localizations: int = 0
    errors: list[str] = field(default_factory=list)
    restarts: int = 0
    eos: bool = False
    gave_up: bool = False
    started: float = field(default_factory=time.perf_counter)
    last_stats: float = field(default_factory=time.perf_counter)

    def absorb(self, msg: object) -> None:
        if isinstance(msg, StatsMsg):
            self.last_stats = time.perf_counter()
            self.stats.extend(msg.frame_stats)
            self.localizations += sum(s.count for s in msg.frame_stats)
            self.worker = msg.worker
        elif isinstance(msg, ErrorMsg):
            self.errors.append(f"{msg.code}: {msg.message}")
        elif isinstance(msg, EosMsg):
            self.eos = True

    def recent_density_per_um2(self, n: int = 50) -> float | None:
        """Mean density of the last ``n`` frames localized (None before the first)."""
        recent = [s.density_per_um2 for s in self.stats[-n:]]
        return float(np.mean(recent)) if recent else None


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as logf:
        return subprocess.Popen(
            [sys.executable, "-m", "live_decode", *args],
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
        )


def display_available() -> bool:
    """Whether a window could open here (X11 or Wayland)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class Supervisor:
    """Owns the child processes of one run."""

    def __init__(self, opts: RunOptions) -> None:
        self.opts = opts
        self.cfg = load_config_or_demo(opts.config)
        self.model = model_path(self.cfg, opts.model)  # fail fast, before anything starts
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out: Path = opts.out or Path("runs") / stamp
        self.out.mkdir(parents=True, exist_ok=True)
        self.ep: Endpoints = endpoints_for(self.cfg)
        self.common = [] if opts.config is None else [str(opts.config)]
        self.state = RunState()
        self.source: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.viewer: subprocess.Popen[bytes] | None = None
        self._worker_started = time.perf_counter()
        self._source_ended: float | None = None
        self._orphan_stopped = False

    def _worker_args(self, resume: bool) -> list[str]:
        a = [
            "worker",
            *self.common,
            "--frames-endpoint",
            self.ep.frames,
            "--results-endpoint",
            self.ep.results,
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
        if not self.opts.record_raw:
            a.append("--no-raw")
        return a

    def start(self) -> None:
        logs = self.out / "logs"
        logs.mkdir(exist_ok=True)
        self.worker = _spawn(self._worker_args(False), logs / "worker.log")
        self.source = _spawn(self._source_args(), logs / "source.log")
        if not self.opts.headless and display_available():
            self.viewer = _spawn(
                [
                    "view",
                    self.ep.results.rsplit(":", 1)[0].split("//")[1],
                    "--results-endpoint",
                    self.ep.results,
                    "--preview-endpoint",
                    self.ep.preview,
                    "--control-endpoint",
                    self.ep.control,
                    "--model",
                    str(self.model),
                    "--target",
                    str(self.cfg.control.target_density_per_um2),
                ],
                logs / "viewer.log",
            )

    def _check_worker(self) -> None:
        assert self.worker is not None
        code = self.worker.poll()
        if code is None or self.state.eos:
            return
        if code == 0 or self.state.gave_up:
            return
        if self.source is not None and self.source.poll() is not None:
            # The source has finished: a new worker could never receive a frame (and would wait
            # forever); what the dead one still had queued is lost.
            self.state.gave_up = True
            self.state.errors.append(
                f"worker exited with {code} after the source had finished; not restarted, "
                "the frames it still had queued are lost"
            )
            return
        if self.state.restarts >= MAX_RESTARTS:
            self.state.gave_up = True
            self.state.errors.append(f"worker died ({code}) {MAX_RESTARTS + 1} times; giving up")
            return
        self.state.restarts += 1
        log.warning("worker exited with %s: restarting (%d)", code, self.state.restarts)
        self.state.errors.append(f"worker exited with {code}; restarted")
        self.worker = _spawn(self._worker_args(True), self.out / "logs" / "worker.log")
        self._worker_started = time.perf_counter()

    def _stop_orphaned_worker(self) -> None:
        """A restarted worker that connected after the source ended never gets end-of-stream:
        once the source is gone and the worker quiet for ``ORPHAN_GRACE_S``, stop it."""
        assert self.worker is not None and self.source is not None
        if self.state.restarts == 0 or self._orphan_stopped or self.worker.poll() is not None:
            return
        if self.source.poll() is None:
            return
        now = time.perf_counter()
        if self._source_ended is None:
            self._source_ended = now
        busy = max(self._source_ended, self.state.last_stats, self._worker_started)
        if now - busy > ORPHAN_GRACE_S:
            self._orphan_stopped = True
            self.state.errors.append("the restarted worker missed the end of stream; stopped it")
            self.worker.terminate()

    def supervise(self, on_update: Callable[[RunState], None] | None = None) -> int:
        """Watch the children until the run ends; ``on_update(state)`` after each poll."""
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sub = ResultSubscriber(ctx, self.ep.results, topics=("stats", "event"))
        try:
            while True:
                msg = sub.recv(timeout_ms=200)
                while msg is not None:
                    self.state.absorb(msg)
                    msg = sub.recv(timeout_ms=0)
                if on_update is not None:
                    on_update(self.state)
                self._check_worker()
                self._stop_orphaned_worker()
                assert self.worker is not None and self.source is not None
                if self.worker.poll() == 0 or (self.state.eos and self.worker.poll() is not None):
                    break
                if self.source.poll() is not None and self.worker.poll() is not None:
                    break
        except KeyboardInterrupt:
            log.info("stopping: finishing the frames in flight ...")
            self.stop()
        finally:
            sub.close()
            ctx.term()
        self.wait()
        return 0

    def stop(self) -> None:
        for proc in (self.source, self.viewer):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        if self.worker is not None:
            try:
                self.worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.worker.terminate()

    def wait(self) -> None:
        for proc in (self.source, self.worker):
            if proc is not None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.viewer is not None and self.viewer.poll() is None:
            self.viewer.terminate()


def write_summary(out: Path, state: RunState) -> dict[str, object]:
    """``summary.json`` from the children's summaries and what the supervisor saw."""

    def read(name: str) -> dict[str, object]:
        path = out / name
        return json.loads(path.read_text()) if path.is_file() else {}

    worker, source = read("worker_summary.json"), read("source_summary.json")
    densities = [s.density_per_um2 for s in state.stats]
    summary: dict[str, object] = {
        "frames_in": source.get("frames_read"),
        "frames_sent": source.get("frames_sent"),
        "frames_processed": worker.get("frames_processed"),
        "frames_dropped": source.get("frames_dropped"),
        "frames_lost_on_restart": worker.get("frames_lost_on_restart", 0),
        "localizations": worker.get("localizations"),
        "mean_density_per_um2": float(np.mean(densities)) if densities else None,
        "throughput_fps": worker.get("fps"),
        "latency_ms_p50": worker.get("latency_ms_p50"),
        "latency_ms_p99": worker.get("latency_ms_p99"),
        "worker_restarts": state.restarts,
        "errors": state.errors,
        "wall_s": round(time.perf_counter() - state.started, 2),
    }
    summary = {k: _json_safe(v) for k, v in summary.items()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return summary


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run: its directory, ``summary.json``'s content and the exit status."""

    out: Path
    summary: dict[str, object]
    exit_code: int


def run_pipeline(
    opts: RunOptions, on_update: Callable[[RunState], None] | None = None
) -> RunResult:
    """Start, supervise and finish one live run; write ``summary.json`` and the plots."""
    from live_decode.pipeline.plots import plot_run

    sup = Supervisor(opts)
    sup.start()
    code = sup.supervise(on_update)
    summary = write_summary(sup.out, sup.state)
    plot_run(sup.out, sup.state.stats, sup.cfg)
    return RunResult(sup.out, summary, code)


def _json_safe(value: object) -> object:
    """NaN/inf → None, so strict JSON readers accept summary.json."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
