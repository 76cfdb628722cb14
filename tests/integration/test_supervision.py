"""Honest supervision (issue 12): every failure of a run is visible, every exit code true.

Real ``live-decode`` processes on loopback, the tiny untrained model (conftest) on the demo's
64×64 simulated microscope. Each test asserts the exit code, the message, what is on disk and
that no process of the run is left. Waits poll with deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import tifffile

from live_decode.inference.worker import CSV_NAME, HDF5_NAME
from live_decode.io.picasso import read_picasso_hdf5, read_picasso_info
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.pipeline.build import _free_ports
from live_decode.testing.frames import camera_movie

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
T = TypeVar("T")


# --------------------------------------------------------------------------- helpers
def wait_for(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)


def children(pid: int) -> dict[int, str]:
    """{pid: command line} of the live (not zombie) children of ``pid``."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out[int(stat.parent.name)] = cmd
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def committed_frames(run_dir: Path) -> int:
    try:
        return int(read_picasso_info(run_dir / HDF5_NAME)[0]["Frames"])
    except Exception:  # not written yet, or replaced while we read
        return 0


def read_json(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)
    assert isinstance(data, dict)
    return data


def _no_constants(name: str) -> object:
    raise AssertionError(f"{name} in a JSON file: not strict JSON")


def num(data: dict[str, object], key: str) -> int:
    value = data[key]
    assert isinstance(value, int), f"{key} = {value!r}"
    return value


def assert_files_agree(run_dir: Path) -> None:
    csv = read_thunderstorm_csv(run_dir / CSV_NAME)
    h5 = read_picasso_hdf5(run_dir / HDF5_NAME)
    assert len(csv) == len(h5)
    np.testing.assert_array_equal(csv["frame"], h5["frame"])


class Run:
    """One ``live-decode`` command in its own session, killed at teardown if still there."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.out_path = tmp_path / "console.out"
        self.err_path = tmp_path / "console.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "live_decode", *args],
                stdout=out,
                stderr=err,
                env=ENV,
                cwd=REPO,
                start_new_session=True,
            )
        self.seen: dict[int, str] = {}

    def watch(self) -> dict[int, str]:
        """Remember the run's children (source, worker) as they appear."""
        self.seen |= children(self.proc.pid)
        return self.seen

    def child(self, role: str, timeout_s: float = 120) -> int:
        def find() -> int | None:
            for pid, cmd in self.watch().items():
                if f"live_decode {role} " in cmd and alive(pid):
                    return pid
            return None

        return wait_for(find, timeout_s, f"the {role} process")

    def wait(self, timeout_s: float = 120) -> int:
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.watch()
            time.sleep(0.1)
        return self.proc.wait(timeout=1)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def assert_nothing_left(self) -> None:
        left = {pid: cmd for pid, cmd in self.seen.items() if alive(pid)}
        assert not left, f"processes left behind: {left}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for pid in self.seen:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for r in started:
        r.kill()


def live_run(tmp_path: Path, runs: list[Run], model: Path, *extra: str) -> tuple[Run, Path]:
    out = tmp_path / "run"
    args = ["run", "--headless", "--no-dashboard", "--out", str(out), "--model", str(model)]
    r = Run(tmp_path, *args, *extra)
    runs.append(r)
    return r, out


def noise_movie(path: Path, n: int, size: int = 64, *, ome: bool = False) -> Path:
    # ~20 localizations per frame from the tiny model, as the tests were sized for
    movie = camera_movie((n, size, size), seed=3, spots_per_frame=20, spot_photons=6000)
    tifffile.imwrite(path, movie, ome=ome)
    return path


# --------------------------------------------------------------------------- refused model
def test_a_refused_model_ends_the_run_with_exit_2_before_anything_starts(tmp_path: Path) -> None:
    """The README's sCMOS config with the bundled EMCCD model: refused before acquisition."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "live_decode", "run", str(CONFIGS / "scmos_2d.yaml")]
    cmd += ["--frames", "20", "--headless", "--no-dashboard", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "refused: model 'demo_lite' does not match" in proc.stderr
    assert "pixel size" in proc.stderr and "--ignore-model-mismatch" in proc.stderr
    summary = read_json(out / "summary.json")
    assert summary["status"] == "refused" and summary["exit_code"] == 2
    assert "pixel size" in str(summary["reason"])
    assert summary["worker_restarts"] == 0
    assert not (out / "logs").exists()  # no process was started, no frame acquired


def test_a_worker_refusing_the_camera_stops_the_source_before_it_acquires(
    tmp_path: Path, tiny_model: Path
) -> None:
    """``source --wait-for-worker`` describes its camera (here an sCMOS) first; the worker's
    model (the demo's EMCCD) does not fit, it answers refused: both exit 2 with the mismatch,
    and no frame is acquired."""
    out = tmp_path / "run"
    frames, results = (f"tcp://127.0.0.1:{p}" for p in _free_ports("127.0.0.1", 2, set()))
    worker_cmd = ["worker", "--frames-endpoint", frames]
    worker_cmd += ["--results-endpoint", results, "--out", str(out), "--model", str(tiny_model)]
    source_cmd = ["source", str(CONFIGS / "scmos_2d.yaml"), "--frames-endpoint", frames]
    source_cmd += ["--results-endpoint", results]
    source_cmd += ["--wait-for-worker", "120", "--out", str(out), "--frames", "50", "--no-raw"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "live_decode", *worker_cmd],
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=REPO,
    )
    source = subprocess.Popen(
        [sys.executable, "-m", "live_decode", *source_cmd],
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=REPO,
    )
    try:
        _, source_err = source.communicate(timeout=180)
        _, worker_err = worker.communicate(timeout=60)
    finally:
        for p in (source, worker):
            if p.poll() is None:
                p.kill()
    assert source.returncode == 2, source_err
    assert worker.returncode == 2, worker_err
    for err in (source_err.decode(), worker_err.decode()):
        assert "does not match this camera/stream" in err and "camera type" in err
    assert read_json(out / "source_summary.json")["frames_read"] == 0
    record = read_json(out / "source_exit.json")
    assert record["status"] == "refused" and "camera type" in str(record["reason"])
    assert read_json(out / "worker_exit.json")["status"] == "refused"


# --------------------------------------------------------------------------- a child dies
def test_a_killed_source_ends_the_run_and_the_reason_is_kept(
    tmp_path: Path, runs: list[Run], tiny_model: Path
) -> None:
    r, out = live_run(tmp_path, runs, tiny_model, "--seconds", "300")
    source = r.child("source")
    r.child("worker")
    wait_for(lambda: committed_frames(out) >= 5, 180, "the first localized frames")
    os.kill(source, signal.SIGKILL)
    assert r.wait(timeout_s=60) == 1, r.stderr
    assert "failed: source killed by SIGKILL" in r.stderr
    summary = read_json(out / "summary.json")
    assert summary["status"] == "failed" and summary["exit_code"] == 1
    assert summary["reason"] == "source killed by SIGKILL"
    assert summary["worker_restarts"] == 0
    assert read_json(out / "worker_exit.json")["status"] == "done"  # stopped, files closed
    assert_files_agree(out)
    r.assert_nothing_left()


def test_a_worker_killed_during_a_replay_is_counted_and_fails_the_run(
    tmp_path: Path, runs: list[Run], tiny_model: Path
) -> None:
    movie = noise_movie(tmp_path / "movie.tif", 200)
    r, out = live_run(tmp_path, runs, tiny_model, "--replay", str(movie), "--ignore-model-mismatch")
    worker = r.child("worker")
    wait_for(lambda: committed_frames(out) >= 10, 180, "the first localized frames")
    os.kill(worker, signal.SIGKILL)
    code = r.wait(timeout_s=180)
    summary = read_json(out / "summary.json")
    sent = num(summary, "frames_sent")
    assert sent == 200
    accounted = num(summary, "frames_processed") + num(summary, "frames_lost_on_restart")
    assert accounted + num(summary, "frames_rejected") == sent, summary  # nothing uncounted
    assert any("worker killed by SIGKILL" in str(e) for e in summary["errors"])  # type: ignore[union-attr]
    lost = num(summary, "frames_lost_on_restart")
    if lost:  # a replay promises every frame: losing some with the dead worker is a failure
        assert code == 1, r.stderr
        assert summary["status"] == "failed"
        assert f"{lost} of 200 frames of the replay were never localized" in str(summary["reason"])
        assert "never localized" in r.stderr
    else:  # restarted while the source still had every lost frame to send
        assert code == 0, r.stderr
        assert summary["status"] == "completed" and summary["frames_processed"] == 200
    assert_files_agree(out)
    r.assert_nothing_left()


def test_a_missing_replay_movie_is_a_clear_error_not_a_hang(
    tmp_path: Path, runs: list[Run], tiny_model: Path
) -> None:
    missing = tmp_path / "nope.ome.tif"
    r, out = live_run(tmp_path, runs, tiny_model, "--replay", str(missing))
    assert r.wait(timeout_s=120) == 2, r.stderr
    assert f"{missing}: movie file not found" in r.stderr
    summary = read_json(out / "summary.json")
    assert summary["status"] == "bad_input" and "movie file not found" in str(summary["reason"])
    r.assert_nothing_left()


# --------------------------------------------------------------------------- stop signals
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_stop_the_run_like_ctrl_c(
    signum: int, code: int, tmp_path: Path, runs: list[Run], tiny_model: Path
) -> None:
    r, out = live_run(tmp_path, runs, tiny_model, "--seconds", "300")
    r.child("source")
    r.child("worker")
    wait_for(lambda: committed_frames(out) >= 5, 180, "the first localized frames")
    os.kill(r.proc.pid, signum)
    assert r.wait(timeout_s=90) == code, r.stderr
    name = signal.Signals(signum).name
    summary = read_json(out / "summary.json")
    assert summary["status"] == "interrupted" and summary["reason"] == f"stopped by {name}"
    source_log = (out / "logs" / "source.log").read_text()
    assert "405 nm (simulated) -> 0 mW (safe)" in source_log  # the laser first
    assert read_json(out / "source_summary.json")["eos_sent"] is True
    # The worker localized every frame the source sent, then closed the files.
    assert read_json(out / "worker_exit.json")["reason"] == "end of stream"
    assert summary["frames_processed"] == summary["frames_sent"]
    assert_files_agree(out)
    r.assert_nothing_left()


# --------------------------------------------------------------------------- files
def localize(
    out: Path, model: Path, *movies: Path, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "live_decode", "localize", *map(str, movies)]
    cmd += ["--out", str(out), "--model", str(model), "--ignore-model-mismatch", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)


def test_an_earlier_run_is_never_replaced_without_overwrite(
    tmp_path: Path, tiny_model: Path
) -> None:
    movie = noise_movie(tmp_path / "movie.tif", 20)
    out = tmp_path / "run"
    assert localize(out, tiny_model, movie).returncode == 0
    before = (out / CSV_NAME).read_bytes()
    summary = read_json(out / "summary.json")
    assert summary["status"] == "completed"
    for live_only in ("latency_ms_p50", "frames_dropped", "worker_restarts"):
        assert live_only not in summary

    again = localize(out, tiny_model, movie)
    assert again.returncode == 2
    assert f"{out} already holds the results of a run" in again.stderr
    assert "--overwrite" in again.stderr
    assert (out / CSV_NAME).read_bytes() == before

    replaced = localize(out, tiny_model, movie, extra=("--overwrite",))
    assert replaced.returncode == 0, replaced.stderr
    assert read_json(out / "summary.json")["frames_processed"] == 20


def test_a_truncated_ome_tiff_names_the_frames_read_of_those_announced(
    tmp_path: Path, tiny_model: Path
) -> None:
    """tifffile's OME-TIFF keeps its page index and OME-XML at the end: cut at 60 %, only the
    first page is left to read and nothing says how many there were. It was localized as a
    1-frame movie (exit 0); now it is an error naming what was readable and where it ends."""
    movie = noise_movie(tmp_path / "cut.ome.tif", 40, ome=True)
    data = movie.read_bytes()
    movie.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "run"
    proc = localize(out, tiny_model, movie)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    message = proc.stderr[proc.stderr.index("error: ") :]
    assert f"{movie}: truncated: 1 frame(s) readable" in message
    assert f"the file ends at {int(len(data) * 0.6)}" in message
    assert not (out / CSV_NAME).exists()


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a small tmpfs (root only; skipped with the reason otherwise)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'})")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_read_only_output_is_a_clear_error(
    tmp_path: Path, tiny_model: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    movie = noise_movie(tmp_path / "movie.tif", 10)
    ro = mount_tmpfs("ro,size=1m")
    proc = localize(ro / "run", tiny_model, movie)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{ro / 'run'}: cannot write the run directory (Read-only file system)" in proc.stderr


def test_a_full_disk_stops_cleanly_keeping_what_was_written(
    tmp_path: Path, tiny_model: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """Localizations fill a 500 kB disk: exit 1 with the OS error, no traceback; the HDF5 file
    is whole and holds what was localized, and every JSON file left behind is complete."""
    movie = noise_movie(tmp_path / "movie.tif", 200)
    disk = mount_tmpfs("size=500k")
    proc = localize(disk / "run", tiny_model, movie)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(read_picasso_hdf5(disk / "run" / HDF5_NAME)) > 0
    for path in (disk / "run").glob("*.json"):
        read_json(path)  # complete, strict JSON (or not written at all)


# --------------------------------------------------------------------------- CURVE
def test_curve_keys_reach_every_socket_and_a_client_without_keys_gets_nothing(
    tmp_path: Path, runs: list[Run], tiny_model: Path
) -> None:
    """``transport.keys_dir``: source, worker and supervisor talk CURVE (the run localizes);
    a subscriber with the client keys receives the stats, one without keys receives nothing.
    Ctrl-C (SIGINT) then ends the run: exit 130, summary complete."""
    import yaml
    import zmq

    from live_decode.io.run_dir import read_endpoints
    from live_decode.messages import StatsMsg
    from live_decode.pipeline.build import DEMO_CONFIG
    from live_decode.transport.curve import client_keys, generate_key_set
    from live_decode.transport.results import ResultSubscriber

    keys = generate_key_set(tmp_path / "keys")
    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg["transport"] = {"keys_dir": str(keys)}
    config = tmp_path / "curve.yaml"
    config.write_text(yaml.safe_dump(cfg))
    r, out = live_run(tmp_path, runs, tiny_model, str(config), "--seconds", "300")
    r.child("worker")
    wait_for(lambda: committed_frames(out) >= 5, 180, "localized frames over CURVE")
    results = read_endpoints(out).endpoints.results
    assert read_endpoints(out).curve is True

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with_keys = ResultSubscriber(ctx, results, topics=("stats",), curve=client_keys(keys))
        without = ResultSubscriber(ctx, results, topics=("stats",))
        got = wait_for(lambda: with_keys.recv(timeout_ms=200), 60, "stats with the client keys")
        assert isinstance(got, StatsMsg)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert without.recv(timeout_ms=200) is None, "a client without keys got results"
        with_keys.close()
        without.close()
    finally:
        ctx.destroy(linger=0)

    os.kill(r.proc.pid, signal.SIGINT)
    assert r.wait(timeout_s=90) == 130, r.stderr
    summary = read_json(out / "summary.json")
    assert summary["status"] == "interrupted" and summary["reason"] == "stopped by SIGINT"
    assert summary["frames_processed"] == summary["frames_sent"]
    assert_files_agree(out)
    r.assert_nothing_left()


def test_a_full_disk_during_a_live_run_stops_it_cleanly(
    tmp_path: Path, runs: list[Run], tiny_model: Path, mount_tmpfs: Callable[[str], Path]
) -> None:
    """The raw recording fills a 600 kB disk within seconds: the run fails with the OS error
    (exit 1, not restarted), the laser goes to its safe value, nothing is left running and
    every JSON file that could be written is complete."""
    disk = mount_tmpfs("size=600k")
    out = disk / "run"
    args = ["run", "--headless", "--no-dashboard", "--out", str(out), "--model", str(tiny_model)]
    r = Run(tmp_path, *args, "--seconds", "300")
    runs.append(r)
    r.child("source")
    assert r.wait(timeout_s=240) == 1, r.stderr
    assert "No space left on device" in r.stderr
    assert "Traceback" not in r.stderr
    for path in out.glob("*.json"):
        read_json(path)
    summary_path = out / "summary.json"
    if summary_path.exists():
        summary = read_json(summary_path)
        assert summary["status"] == "failed" and summary["worker_restarts"] == 0
    r.assert_nothing_left()


def test_a_worker_without_a_stream_stops_after_its_idle_timeout(
    tmp_path: Path, tiny_model: Path
) -> None:
    """No source ever connects: the worker stops by itself and says why."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "live_decode", "worker", "--out", str(out)]
    frames_port, results_port = _free_ports("127.0.0.1", 2, set())
    cmd += ["--frames-endpoint", f"tcp://127.0.0.1:{frames_port}"]
    cmd += ["--results-endpoint", f"tcp://127.0.0.1:{results_port}"]
    cmd += ["--model", str(tiny_model), "--idle-timeout", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "no frames for 2 s: stopping" in proc.stderr
    record = read_json(out / "worker_exit.json")
    assert record["status"] == "done" and record["reason"] == "idle timeout: no frames for 2 s"
