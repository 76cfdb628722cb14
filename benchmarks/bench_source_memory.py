"""Memory growth per frame of the source process (issue 12: flat over a day at 1 kHz).

Run: ``pytest benchmarks/bench_source_memory.py --benchmark-only``. A real
:class:`~live_decode.sources.runner.SourceRunner` drives the simulated microscope (32×32 px, as
fast as it goes) into a real :class:`FramePusher` over tcp loopback, drained by a thread, and
records every frame with the raw-data recorder (:class:`~live_decode.io.movie.MovieRecorder`, as
``run`` does by default). :mod:`tracemalloc` reads the Python heap at :data:`POINTS` frame counts
after a warm-up (from the runner's per-frame tick); the growth per frame is the slope of a
least-squares line through them, and ``extra_info`` extrapolates it to 8 h of a 1 kHz camera.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zmq

from live_decode.config import config_from_dict, load_config
from live_decode.io.calibration import CAMERA_KEYS
from live_decode.io.movie import MovieRecorder
from live_decode.pipeline.build import DEMO_CONFIG
from live_decode.sources.runner import SourceRunner
from live_decode.sources.simulated import SimulatedSource
from live_decode.transport.frames import FramePuller, FramePusher

N_FRAMES = 3000
WARM_UP_FRAMES = 500
POINTS = 6
FRAMES_8H_AT_1KHZ = 8 * 3600 * 1000


def _growth_bytes_per_frame(tmp: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    data = load_config(DEMO_CONFIG).model_dump(mode="json")
    data["microscope"]["fov_px"] = [32, 32]
    cfg = config_from_dict(data)
    source = SimulatedSource(cfg)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pusher = FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True, sndhwm=16, frame_bytes=2048)
    puller = FramePuller(ctx, pusher.endpoint, rcvhwm=16, frame_bytes=2048)
    done = threading.Event()

    def drain() -> None:
        while not done.is_set():
            puller.recv(timeout_ms=50)

    cam = source.camera
    camera = {k: float(getattr(cam, k)) for k in CAMERA_KEYS} | {"kind": "emccd"}
    recorder = MovieRecorder(tmp / "raw.ome.tif", camera, source.frame_interval_ms)
    marks = set(np.linspace(WARM_UP_FRAMES, N_FRAMES - 1, POINTS).astype(int).tolist())
    samples: list[tuple[int, int]] = []

    def tick(index: int) -> None:
        if index in marks:
            gc.collect()
            samples.append((index, tracemalloc.get_traced_memory()[0]))

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    runner = SourceRunner(
        source, pusher, realtime=False, max_frames=N_FRAMES, on_tick=tick, recorder=recorder
    )
    tracemalloc.start()
    try:
        summary = runner.run()
    finally:
        tracemalloc.stop()
        done.set()
        thread.join()
        recorder.close()
        pusher.close()
        puller.close()
        source.close()
        ctx.term()
    assert summary.frames_sent == N_FRAMES
    frames, heap = np.array(samples, dtype=np.float64).T
    per_frame = float(np.polyfit(frames, heap, 1)[0])
    return {
        "bytes_per_frame": round(per_frame, 3),
        "heap_bytes_at_end": int(heap[-1]),
        "extrapolated_8h_1khz_mb": round(per_frame * FRAMES_8H_AT_1KHZ / 1e6, 1),
    }


def test_source_memory_is_flat(benchmark: Any, tmp_path: Path) -> None:
    info = benchmark.pedantic(_growth_bytes_per_frame, args=(tmp_path,), rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    print(info)
