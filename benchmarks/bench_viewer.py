"""Does the viewer keep up? 1,000 frames/s and 100,000 localizations/s into a live window.

A publisher process (this file with ``--publish``) plays a worker and a source: one ``locs``
message per frame (100 localizations + its frame stats) at 1 kHz on the results channel, and a
512 × 512 uint16 preview at 30 Hz. The viewer window runs offscreen in this process, with its
receiver thread, at its normal refresh rates. Reported:

- ``published_msgs`` (= frames) / ``published_locs`` vs ``received_frames`` / ``received_locs``,
  and ``missed_transport`` (messages the PUB socket dropped for the viewer);
- ``backlog_frames_max`` / ``_final``: frames published (by the clock) but not yet received,
  sampled every 250 ms: a viewer that keeps up holds this near its batching delay, a lagging one
  grows it;
- ``gui_frame_hz`` (raw-frame timer ticks/s; target 25), ``gui_render_hz`` (render ticks/s;
  target ~6.7), ``preview_drawn_hz`` (new raw frames drawn/s);
- CPU seconds per wall second of the viewer and the publisher.

Run ``pytest benchmarks/bench_viewer.py`` (numbers in ``extra_info``), or as a script:
``QT_QPA_PLATFORM=offscreen python benchmarks/bench_viewer.py [--seconds 10] [--gaussian]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

FPS, LOCS_PER_FRAME, SECONDS = 1000, 100, 8.0
PREVIEW_SHAPE = (512, 512)
CAMERA_PX_NM = 100.0


# --------------------------------------------------------------------------- publisher process
def publish(fps: int, locs_per_frame: int, seconds: float) -> None:
    """Bind, print the endpoints, heartbeat until "go" on stdin, then stream; print totals."""
    import zmq

    from live_decode.messages import (
        CameraMeta,
        EosMsg,
        FrameStats,
        HeartbeatMsg,
        LocsMsg,
        WorkerStats,
        empty_locs,
    )
    from live_decode.transport.preview import PreviewPublisher
    from live_decode.transport.results import ResultPublisher

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    results = ResultPublisher(ctx, "tcp://127.0.0.1:*", sndhwm=100_000)
    preview = PreviewPublisher(ctx, "tcp://127.0.0.1:*", max_rate_hz=30.0)
    print(json.dumps({"results": results.endpoint, "preview": preview.endpoint}), flush=True)
    rng = np.random.default_rng(0)
    h_nm, w_nm = PREVIEW_SHAPE[0] * CAMERA_PX_NM, PREVIEW_SHAPE[1] * CAMERA_PX_NM
    pool = []
    for _ in range(256):  # pre-drawn batches: the publisher must not be the bottleneck
        locs = empty_locs(locs_per_frame)
        locs["x_nm"] = rng.uniform(0, w_nm, locs_per_frame)
        locs["y_nm"] = rng.uniform(0, h_nm, locs_per_frame)
        locs["prob"] = rng.uniform(0.5, 1.0, locs_per_frame)
        locs["sigma_x_nm"] = rng.uniform(8, 25, locs_per_frame)
        locs["sigma_y_nm"] = rng.uniform(8, 25, locs_per_frame)
        pool.append(locs)
    frames = [rng.poisson(110, PREVIEW_SHAPE).astype(np.uint16) for _ in range(4)]
    camera = CameraMeta(CAMERA_PX_NM, 100.0, 1.0, 1.0, 1.0, 1.0)
    worker = WorkerStats(fps=float(fps), latency_ms=2.0, queue_depth=0, dropped_upstream=0)
    density = locs_per_frame / (h_nm * w_nm / 1e6)
    go = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), go.set()), daemon=True).start()
    while not go.wait(0.01):
        results.publish(HeartbeatMsg(time.time_ns()))

    cpu0, t0 = time.process_time(), time.monotonic()
    n = 0
    while (now := time.monotonic()) - t0 < seconds:
        due = int((now - t0) * fps) + 1  # frames that should be out by now
        while n < due:
            locs = pool[n % len(pool)].copy()
            locs["frame"] = n
            stats = (FrameStats(n, locs_per_frame, density, 2000.0, 10.0, 15.0),)
            results.publish(LocsMsg(locs=locs, frame_stats=stats, worker=worker))
            preview.offer(frames[n % 4], index=n, timestamp_ns=time.time_ns(), camera=camera)
            n += 1
        time.sleep(max(0.0, (n / fps) - (time.monotonic() - t0)))
    elapsed = time.monotonic() - t0
    results.publish(EosMsg(last_index=n - 1))
    time.sleep(0.2)
    print(
        json.dumps(
            {
                "published_msgs": n,
                "published_locs": n * locs_per_frame,
                "publish_s": elapsed,
                "publisher_cpu_per_s": (time.process_time() - cpu0) / elapsed,
            }
        ),
        flush=True,
    )
    results.close(linger_ms=500)
    preview.close()
    ctx.term()


# --------------------------------------------------------------------------- viewer side
def run_viewer(
    seconds: float = SECONDS,
    fps: int = FPS,
    locs_per_frame: int = LOCS_PER_FRAME,
    gaussian: bool = False,
) -> dict[str, Any]:
    """Start the publisher, watch it with a real (offscreen) window, return the numbers."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qtpy.QtCore import QCoreApplication, QEventLoop, QTimer
    from qtpy.QtWidgets import QApplication

    from live_decode.endpoints import RunEndpoints
    from live_decode.viewer.accumulator import RenderSettings
    from live_decode.viewer.window import open_viewer

    app = QApplication.instance() or QApplication([])  # noqa: F841 - must exist
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--publish",
            "--fps",
            str(fps),
            "--locs-per-frame",
            str(locs_per_frame),
            "--seconds",
            str(seconds),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        endpoints = json.loads(proc.stdout.readline())
        window = open_viewer(
            RunEndpoints(results=endpoints["results"], preview=endpoints["preview"]),
            settings=RenderSettings(pixel_size_nm=10.0, gaussian=gaussian),
        )
        window.resize(1400, 850)
        window.show()
        rx = window.receiver

        def spin(duration_s: float) -> None:
            """Run the GUI event loop for ``duration_s`` (timers fire, windows paint)."""
            waiting = QEventLoop()
            QTimer.singleShot(max(1, round(duration_s * 1000)), waiting.quit)
            waiting.exec()

        while rx.health().messages == 0:  # subscription live (slow joiner)
            spin(0.05)
        spin(1.0)  # first paint (fonts, caches) before the stream: a one-off start-up cost
        base_msgs = rx.health().messages
        frame_ticks0, render_ticks0, drawn0 = _ticks(window)
        cpu0 = time.process_time()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        t_go = time.monotonic()
        backlog: list[int] = []

        def sample() -> None:
            expected = min(int((time.monotonic() - t_go) * fps), int(seconds * fps))
            latest = rx.latest_result_frame()
            backlog.append(expected - (latest if latest is not None else -1) - 1)

        sampler = QTimer()
        sampler.timeout.connect(sample)
        sampler.start(250)
        # Run the GUI for the whole stream; count ticks over the streaming part only.
        loop_timer = QTimer()
        loop_timer.setSingleShot(True)
        loop = QEventLoop()
        loop_timer.timeout.connect(loop.quit)
        loop_timer.start(int(seconds * 1000))
        loop.exec()
        wall = time.monotonic() - t_go
        frame_ticks, render_ticks, drawn = _ticks(window)
        viewer_cpu = (time.process_time() - cpu0) / wall
        sampler.stop()
        final_backlog = backlog[-1] if backlog else 0
        # Drain: how long until everything published has arrived?
        summary = json.loads(proc.stdout.readline())
        drain_start = time.monotonic()
        while rx.health().messages - base_msgs < summary["published_msgs"]:
            if time.monotonic() - drain_start > 5:
                break
            spin(0.02)
        drain_s = time.monotonic() - drain_start
        draw_backlog_at_end = rx.health().draw_backlog
        while rx.health().draw_backlog and time.monotonic() - drain_start < 30:
            spin(0.05)
        draw_catch_up_s = time.monotonic() - drain_start
        spin(0.3)
        health = rx.health()
        window.close()
        window.deleteLater()  # delete Qt objects now, not during interpreter shutdown
        QCoreApplication.processEvents()
        del window, sampler, loop_timer, loop
        return {
            **summary,
            "received_frames": int(rx.traces().frames.size),
            "received_locs": health.locs_received,
            "missed_transport": health.missed_transport,
            "backlog_frames_max": max(backlog, default=0),
            "backlog_samples": backlog,
            "backlog_frames_final": final_backlog,
            "drain_s_after_stop": round(drain_s, 3),
            "draw_backlog_at_end": draw_backlog_at_end,
            "draw_caught_up_s_after_stop": round(draw_catch_up_s, 3),
            "gui_frame_hz": round((frame_ticks - frame_ticks0) / wall, 1),
            "gui_render_hz": round((render_ticks - render_ticks0) / wall, 1),
            "preview_drawn_hz": round((drawn - drawn0) / wall, 1),
            "viewer_cpu_per_s": round(viewer_cpu, 2),
            "gaussian": gaussian,
            "cpus": os.cpu_count(),
            "load_avg_1min": round(os.getloadavg()[0], 2),
        }
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stdin.close()
        proc.stdout.close()


def _ticks(window: Any) -> tuple[int, int, int]:
    return window.frame_ticks, window.render_ticks, window.frames_drawn


# --------------------------------------------------------------------------- pytest-benchmark
try:
    import pytest
except ImportError:  # script mode without pytest installed
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.mark.qt
    @pytest.mark.parametrize("gaussian", [False, True], ids=["histogram", "gaussian"])
    def test_viewer_keeps_up(benchmark: Any, qapp: Any, gaussian: bool) -> None:
        result: dict[str, Any] = {}

        def once() -> None:
            result.update(run_viewer(gaussian=gaussian))

        benchmark.pedantic(once, rounds=1, iterations=1)
        benchmark.extra_info.update(result)
        assert result["received_frames"] > 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--publish", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fps", type=int, default=FPS)
    p.add_argument("--locs-per-frame", type=int, default=LOCS_PER_FRAME)
    p.add_argument("--seconds", type=float, default=SECONDS)
    p.add_argument("--gaussian", action="store_true")
    args = p.parse_args()
    if args.publish:
        publish(args.fps, args.locs_per_frame, args.seconds)
        return
    result = run_viewer(args.seconds, args.fps, args.locs_per_frame, args.gaussian)
    for key, value in result.items():
        print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
