"""Fault tests on real processes and loopback sockets (issue 4, acceptance "Fault tests").

- A worker killed with SIGKILL mid-stream and restarted with ``--resume`` (by hand, and by the
  ``live-decode run`` supervisor): no localization lost or duplicated in the CSV/HDF5 files, and
  the frames lost with the dead worker are reported.
- A live source much faster than the worker: memory stays bounded and every dropped frame is
  counted once, at the source and in the gaps the worker saw.
- Malformed, truncated, oversized, wrong-version and out-of-place messages sent to a running
  worker: rejected, counted, reported; the worker keeps processing the good frames after them.

Worker processes run an untrained tiny network (a few localizations per frame from noise) so
the tests measure the pipeline, not the model. Every wait polls with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import tifffile
import yaml
import zmq
from zmq.utils.monitor import recv_monitor_message

from live_decode.config import load_config
from live_decode.inference.worker import CSV_NAME, HDF5_NAME, WORKER_SUMMARY_NAME
from live_decode.io.picasso import read_picasso_hdf5, read_picasso_info
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import (
    CameraMeta,
    EosMsg,
    ErrorMsg,
    FrameMsg,
    FrameStats,
    LocsMsg,
    StatsMsg,
    WorkerStats,
    empty_locs,
    encode,
)
from live_decode.pipeline.build import DEMO_CONFIG, _free_ports
from live_decode.sources.base import SourceFrame, camera_from_config
from live_decode.sources.replay import ReplaySource
from live_decode.sources.runner import SourceRunner
from live_decode.testing.frames import camera_movie
from live_decode.transport.frames import FramePusher
from live_decode.transport.results import ResultSubscriber

REPO = Path(__file__).resolve().parents[2]
# One torch thread per process: the tests share two cores with each other and other jobs.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
Ctx = zmq.Context[zmq.Socket[bytes]]
T = TypeVar("T")


# --------------------------------------------------------------------------- helpers
def wait_for(
    check: Callable[[], T | None],
    timeout_s: float,
    what: str,
    alive: subprocess.Popen[bytes] | None = None,
) -> T:
    """Poll ``check`` until it returns a truthy value; fail naming ``what`` after the deadline,
    or at once if the process ``alive`` has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"process exited ({alive.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """True once something listens on 127.0.0.1:``port`` (the worker binds results when ready)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def committed_frames(run_dir: Path) -> int:
    """``Frames`` in the Picasso sidecar: last frame in the HDF5 + 1, written after its flush."""
    try:
        return int(read_picasso_info(run_dir / HDF5_NAME)[0]["Frames"])
    except Exception:  # not written yet, or replaced while we read
        return 0


def read_json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def json_value(path: Path, key: str) -> object:
    """``key`` of a JSON file another process replaces atomically; None while it is missing."""
    try:
        return read_json(path).get(key)
    except (OSError, ValueError):
        return None


def num(data: dict[str, object], key: str) -> int:
    value = data[key]
    assert isinstance(value, int), f"{key} = {value!r}"
    return value


def complete_csv_rows(path: Path, tmp: Path) -> np.ndarray:
    """The CSV's complete lines (a killed writer may have left half a line) as LOC_DTYPE rows."""
    data = path.read_bytes()
    tmp.write_bytes(data[: data.rfind(b"\n") + 1])
    return read_thunderstorm_csv(tmp)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def assert_rows_equal(a: np.ndarray, b: np.ndarray) -> None:
    """Localization rows equal field by field (NaN equals NaN: a 2-D CSV has no z columns)."""
    assert a.dtype == b.dtype and a.shape == b.shape
    for name in a.dtype.names or ():
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def assert_files_agree(run_dir: Path) -> np.ndarray:
    """CSV and HDF5 hold the same localizations, frames in order; returns the CSV rows."""
    csv = read_thunderstorm_csv(run_dir / CSV_NAME)
    h5 = read_picasso_hdf5(run_dir / HDF5_NAME)
    assert len(csv) == len(h5) > 0
    np.testing.assert_array_equal(csv["frame"], h5["frame"])
    np.testing.assert_allclose(csv["x_nm"], h5["x_nm"], atol=0.01)
    np.testing.assert_allclose(csv["y_nm"], h5["y_nm"], atol=0.01)
    # Each worker appends frames in order and a resumed one starts after the last committed
    # frame, so a frame written twice (by two workers) would break the order.
    assert np.all(np.diff(csv["frame"]) >= 0), "frames out of order: a frame was written twice"
    return csv


class Processes:
    """``python -m live_decode ...`` children, each in its own process group, killed at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "live_decode", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=REPO,
                start_new_session=True,  # its own group: teardown also reaches its children
            )
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):  # children of a supervisor we killed
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    p = Processes(tmp_path)
    yield p
    p.close()


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    context: Ctx = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture(scope="module")
def camera() -> CameraMeta:
    return camera_from_config(load_config(DEMO_CONFIG))


def noise_movie(path: Path, n: int, size: int, dtype: str = "uint16", seed: int = 1) -> Path:
    tifffile.imwrite(path, camera_movie((n, size, size), seed=seed).astype(dtype))
    return path


def worker_args(frames_ep: str, results_port: int, out: Path, model: Path) -> list[str]:
    return [
        "worker",
        "--frames-endpoint",
        frames_ep,
        "--results-endpoint",
        f"tcp://127.0.0.1:{results_port}",
        "--out",
        str(out),
        "--model",
        str(model),
        "--ignore-model-mismatch",
    ]


class GatedSource:
    """A replay that hands out frame i only once the test has opened the gate past i."""

    def __init__(self, inner: ReplaySource) -> None:
        self.inner = inner
        self._cv = threading.Condition()
        self._open = 0
        self._read = 0
        self._aborted = False

    camera = property(lambda self: self.inner.camera)
    shape_px = property(lambda self: self.inner.shape_px)
    live = property(lambda self: self.inner.live)
    frame_interval_ms = property(lambda self: self.inner.frame_interval_ms)

    def open_through(self, n_frames: int) -> None:
        with self._cv:
            self._open = n_frames
            self._cv.notify_all()

    def abort(self) -> None:
        """End the stream now (teardown)."""
        with self._cv:
            self._aborted = True
            self._cv.notify_all()

    def read(self) -> SourceFrame | None:
        with self._cv:
            self._cv.wait_for(lambda: self._read < self._open or self._aborted, timeout=60)
            if self._aborted or self._read >= self._open:
                return None
        self._read += 1
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def wait_monitor_event(monitor: zmq.Socket[bytes], event: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if monitor.poll(100) and recv_monitor_message(monitor)["event"] == event:
            return
    raise AssertionError(f"no socket event {event} within {timeout_s} s")


# --------------------------------------------------------------------------- (a) kill the worker
def test_killed_worker_resumes_without_duplicates_and_reports_lost_frames(
    tmp_path: Path, procs: Processes, ctx: Ctx, tiny_model: Path, camera: CameraMeta
) -> None:
    """Lossless replay → worker A (SIGKILLed while waiting for frame 40) → worker B --resume.

    A has written frames 0..38 (39 waits for its successor, the temporal context), so frame 39
    is lost with it; B must start at 40, report 39 as lost, and leave A's rows untouched.
    """
    movie = noise_movie(tmp_path / "movie.tif", 80, 32)
    run_dir = tmp_path / "run"
    source = GatedSource(ReplaySource([movie], camera))
    pusher = FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True, sndhwm=4)
    monitor = pusher.socket.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
    runner = SourceRunner(source, pusher)
    thread = threading.Thread(target=runner.run, name="source", daemon=True)
    args = worker_args(pusher.endpoint, free_port(), run_dir, tiny_model)
    try:
        worker_a = procs.start("worker_a", *args)
        wait_monitor_event(monitor, zmq.EVENT_ACCEPTED, 30)
        thread.start()
        source.open_through(40)
        wait_for(lambda: committed_frames(run_dir) == 39, 20, "worker A to write 0..38", worker_a)
        wait_for(
            lambda: json_value(run_dir / WORKER_SUMMARY_NAME, "last_frame") == 38,
            10,
            "worker A's summary",
            worker_a,
        )
        os.kill(worker_a.pid, signal.SIGKILL)
        assert worker_a.wait(timeout=10) == -signal.SIGKILL
        wait_monitor_event(monitor, zmq.EVENT_DISCONNECTED, 10)
        rows_a = complete_csv_rows(run_dir / CSV_NAME, tmp_path / "a.csv")
        assert set(np.unique(rows_a["frame"])) == set(range(39))

        worker_b = procs.start("worker_b", *args, "--resume")
        wait_monitor_event(monitor, zmq.EVENT_ACCEPTED, 30)
        source.open_through(81)  # the rest of the movie, then end of stream
        assert worker_b.wait(timeout=30) == 0, procs.log("worker_b")
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        runner.stop()
        source.abort()
        if thread.is_alive():
            thread.join(timeout=10)
        monitor.close(linger=0)
        pusher.close()
        source.close()

    final = assert_files_agree(run_dir)
    before = final[final["frame"] <= 38]
    assert_rows_equal(before, rows_a)  # A's rows kept, byte for byte
    after = final[final["frame"] > 38]
    assert set(np.unique(after["frame"])) == set(range(40, 80))
    assert set(np.unique(after["frame"])).isdisjoint(np.unique(rows_a["frame"]))

    summary = read_json(run_dir / WORKER_SUMMARY_NAME)
    assert summary["resumed"] == 1
    assert summary["frames_lost_on_restart"] == 1  # frame 39, pending in A's ring buffer
    assert summary["first_frame"] == 0 and summary["last_frame"] == 79
    assert summary["frames_processed"] == 79  # 39 by A, 40 by B
    assert summary["localizations"] == len(final)
    assert "frames 39..39 (1) were queued in the previous worker and are lost" in procs.log(
        "worker_b"
    )
    assert int(read_picasso_info(run_dir / HDF5_NAME)[0]["Frames"]) == 80


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live children of ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append((int(stat.parent.name), cmd))
    return out


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_supervisor_restarts_a_killed_worker(
    tmp_path: Path, procs: Processes, tiny_model: Path
) -> None:
    """``live-decode run`` (simulated live microscope): SIGKILL its worker mid-acquisition."""
    run_dir = tmp_path / "run"
    sup = procs.start(
        "run",
        "run",
        "--seconds",
        "3",
        "--out",
        str(run_dir),
        "--headless",
        "--no-dashboard",
        "--model",
        str(tiny_model),
        "--ignore-model-mismatch",
    )
    workers = wait_for(
        lambda: [p for p, cmd in _children(sup.pid) if " worker " in cmd], 20, "the worker", sup
    )
    wait_for(lambda: committed_frames(run_dir) >= 5, 25, "the first localized frames", sup)
    os.kill(workers[0], signal.SIGKILL)
    wait_for(lambda: _gone(workers[0]), 10, "the worker to die")
    # The replacement needs seconds to load torch: the files are still the dead worker's.
    rows_a = complete_csv_rows(run_dir / CSV_NAME, tmp_path / "a.csv")
    assert sup.wait(timeout=40) == 0, procs.log("run")

    summary = read_json(run_dir / "summary.json")
    assert summary["worker_restarts"] == 1
    errors = summary["errors"]
    assert isinstance(errors, list) and any("restarted" in str(e) for e in errors)
    final = assert_files_agree(run_dir)
    last_a = int(rows_a["frame"].max())
    kept = final[final["frame"] <= last_a]
    # A batch A was writing when killed may be cut (uncommitted); everything else is A's.
    assert_rows_equal(kept, rows_a[: len(kept)])
    assert len(kept) > 0
    worker = read_json(run_dir / WORKER_SUMMARY_NAME)
    assert worker["resumed"] == 1
    lost = num(worker, "frames_lost_on_restart")
    assert lost >= 1  # at least the frame waiting in A's ring buffer
    assert summary["frames_lost_on_restart"] == lost
    frames_in = num(summary, "frames_in")
    accounted = num(summary, "frames_processed") + num(summary, "frames_dropped")
    # Lost frames may include some the source had dropped anyway (announced to A, lost with it).
    assert accounted <= frames_in <= accounted + lost
    assert worker["localizations"] == len(final)


# --------------------------------------------------------------------------- (b) fast source
def test_fast_live_source_is_bounded_and_every_drop_is_counted(
    tmp_path: Path, procs: Processes, tiny_model: Path
) -> None:
    """A camera-paced replay at 4000 frames/s into a worker doing ~50: drops, not memory."""
    movie = noise_movie(tmp_path / "movie.tif", 40, 64, dtype="float32")
    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg["source"] = {"kind": "replay", "paths": [str(movie)], "loop": True, "fps": 4000}
    cfg["source"]["realtime"] = True
    cfg["transport"] = {"frame_queue": 4}
    cfg["inference"] = {"max_batch": 8}
    config = tmp_path / "fast.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    frames_port, results_port = _free_ports("127.0.0.1", 2, set())
    frames_ep = f"tcp://127.0.0.1:{frames_port}"
    n_frames = 6000
    frame_mb = 64 * 64 * 4 / 2**20

    args = worker_args(frames_ep, results_port, run_dir, tiny_model)
    worker = procs.start("worker", args[0], str(config), *args[1:])
    wait_for(lambda: port_open(results_port), 30, "the worker to start", worker)
    source = procs.start(
        "source",
        "source",
        str(config),
        "--frames-endpoint",
        frames_ep,
        "--frames",
        str(n_frames),
        "--out",
        str(run_dir),
    )
    rss: dict[str, list[float]] = {"worker": [], "source": []}
    baseline: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while worker.poll() is None and time.monotonic() < deadline:
        assert source.poll() in (None, 0), procs.log("source")
        for name, proc in (("worker", worker), ("source", source)):
            if proc.poll() is None:
                rss[name].append(rss_mb(proc.pid))
        if not baseline and committed_frames(run_dir) > 0:  # both running, frames flowing
            baseline = {name: rss[name][-1] for name in rss}
        time.sleep(0.05)
    assert worker.wait(timeout=5) == 0, procs.log("worker")
    assert source.wait(timeout=10) == 0, procs.log("source")

    src = read_json(run_dir / "source_summary.json")
    wrk = read_json(run_dir / WORKER_SUMMARY_NAME)
    assert src["frames_read"] == n_frames and src["eos_sent"] is True
    dropped = num(src, "frames_dropped")
    assert dropped > n_frames // 2, "the source was not faster than the worker"
    assert src["frames_sent"] == n_frames - dropped
    # Every drop counted once: the gaps the worker saw add up to the source's drops.
    lost_at_camera = src.get("frames_lost_upstream", 0)  # none for a replay
    assert wrk["dropped_upstream"] == dropped + lost_at_camera
    assert wrk["gaps"] == src["gaps_sent"]
    assert wrk["frames_received"] == wrk["frames_processed"] == src["frames_sent"]
    assert wrk["rejected_messages"] == 0
    # Memory: what was offered (n_frames × frame size) far exceeds what either process grew by.
    offered_mb = n_frames * frame_mb
    assert offered_mb > 80
    for name in rss:
        growth = max(rss[name]) - baseline[name]
        # Queues hold at most ~2 × 16 frames (+ kernel buffers); the allocator and torch's
        # lazily grown workspaces add tens of MB that do not scale with the frames offered.
        assert growth < 0.6 * offered_mb, (
            f"{name} RSS grew {growth:.0f} MB (offered {offered_mb:.0f} MB)"
        )


# --------------------------------------------------------------------------- (c) bad messages
def _frame(index: int, pixels: np.ndarray, camera: CameraMeta) -> list[bytes | memoryview]:
    return encode(FrameMsg(index=index, timestamp_ns=time.time_ns(), camera=camera, pixels=pixels))


def _with_header(parts: list[bytes | memoryview], **changes: object) -> list[bytes | memoryview]:
    header = json.loads(bytes(parts[0]))
    header.update(changes)
    return [json.dumps(header).encode(), *parts[1:]]


def test_bad_messages_are_rejected_counted_and_the_worker_goes_on(
    tmp_path: Path, procs: Processes, ctx: Ctx, tiny_model: Path, camera: CameraMeta
) -> None:
    frames = camera_movie((40, 32, 32), seed=2)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    monitor = push.get_monitor_socket(zmq.EVENT_ACCEPTED)
    results_port = free_port()
    run_dir = tmp_path / "run"
    worker = procs.start(
        "worker", *worker_args(f"tcp://127.0.0.1:{port}", results_port, run_dir, tiny_model)
    )
    wait_monitor_event(monitor, zmq.EVENT_ACCEPTED, 30)
    monitor.close(linger=0)
    wait_for(lambda: port_open(results_port), 30, "the worker's results socket", worker)
    sub = ResultSubscriber(ctx, f"tcp://127.0.0.1:{results_port}", topics=("stats", "event"))

    # Good frames until the subscription is live (a stats message arrives).
    sent = 0
    got_stats = False
    while not got_stats:
        assert sent < 20, "no stats from the worker"
        push.send_multipart(_frame(sent, frames[sent], camera), copy=False)
        sent += 1
        msg = sub.recv(timeout_ms=3000 if sent > 1 else 0)
        got_stats = isinstance(msg, StatsMsg)

    good = _frame(sent, frames[sent], camera)
    stats = (FrameStats(0, 0, 0.0, 0.0, 0.0, 0.0),)
    locs = LocsMsg(empty_locs(0), stats, WorkerStats(0.0, 0.0, 0, 0))
    huge = np.zeros((4200, 4200), dtype=np.uint32)  # 70.6 MB > the 64 MiB frame limit
    bad: dict[str, list[bytes | memoryview]] = {
        "not JSON": [b"\xff\xfe not json"],
        "JSON but not an object": [b"[1, 2, 3]"],
        "empty header": [b""],
        "wrong version": _with_header(good, v=2),
        "unknown kind": [b'{"v": 1, "kind": "banana", "seq": 0}'],
        "truncated payload": [good[0], bytes(good[1])[:100]],
        "frame without payload": [good[0]],
        "extra part": [*good, b"extra"],
        "disallowed dtype": _with_header(good, dtype="float64"),
        "negative shape": _with_header(good, shape=[-32, -32]),
        "gap of zero frames": [b'{"v": 1, "kind": "gap", "seq": 0, "first": 5, "count": 0}'],
        "oversized header": [b'{"v": 1, "kind": "heartbeat", "pad": "' + b"x" * (1 << 20) + b'"}'],
        "oversized frame": _frame(sent, huge, camera),
        "other frame size": _frame(sent, frames[sent, :16, :16].copy(), camera),
        "duplicate index": _frame(sent - 1, frames[sent - 1], camera),
        "results message on the frame stream": encode(locs),
    }
    for parts in bad.values():
        push.send_multipart(parts, copy=False)
    del huge
    # The stream goes on with the next index, as if nothing had happened between.
    for i in range(sent, sent + 10):
        push.send_multipart(_frame(i, frames[i], camera), copy=False)
    last = sent + 9
    wait_for(
        lambda: committed_frames(run_dir) == last, 30, f"frames up to {last - 1} written", worker
    )
    assert worker.poll() is None, "the worker died"
    push.send_multipart(encode(EosMsg(last_index=last)))
    assert worker.wait(timeout=30) == 0, procs.log("worker")

    summary = read_json(run_dir / WORKER_SUMMARY_NAME)
    assert summary["rejected_messages"] == len(bad), procs.log("worker")
    assert summary["frames_processed"] == last + 1
    assert summary["gaps"] == 0 and summary["dropped_upstream"] == 0
    csv = read_thunderstorm_csv(run_dir / CSV_NAME)
    assert set(np.unique(csv["frame"])) == set(range(last + 1))
    log = procs.log("worker")
    for needle in ("protocol version 2", "unknown message kind", "exceeds", "duplicate"):
        assert needle in log
    # Rejections are reported on the results channel too.
    events = []
    while (msg := sub.recv(timeout_ms=200)) is not None:
        if isinstance(msg, ErrorMsg):
            events.append(msg)
    assert any(e.code == "rejected_message" for e in events)
    sub.close()
    push.close(linger=0)
