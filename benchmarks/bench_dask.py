"""Batch re-analysis on Dask: frames/s for 1, 2, … workers on the same movies (issue 19).

Run: ``pytest benchmarks/bench_dask.py --benchmark-only``. Two simulated movies (demo camera,
64×64 px, ``LIVE_DECODE_BENCH_DASK_FRAMES`` frames each, default 120) are localized with the
bundled model by :func:`~live_decode.pipeline.distributed.localize_many` on a local cluster of
each worker count in ``LIVE_DECODE_BENCH_DASK_WORKERS`` (default ``1,2``; one thread and one
torch thread per worker) on ``LIVE_DECODE_BENCH_DASK_DEVICE`` (default cpu; ``cuda``: the
workers share the GPUs, one per worker where there are several). Each count first runs once to
start the workers and load the model in each (not timed), then once timed: the run directory is
written as by ``live-decode localize``. ``extra_info`` reports frames/s per worker count and the
speed-up over one worker; the benchmark's own time is the whole sweep.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed", reason="needs the [dask] extra: pip install 'dask[distributed]'")

from live_decode.config import load_config
from live_decode.io.movie import write_movie
from live_decode.pipeline.build import DEMO_CONFIG
from live_decode.pipeline.distributed import local_client, localize_many
from live_decode.sources.base import camera_from_config

FRAMES = int(os.environ.get("LIVE_DECODE_BENCH_DASK_FRAMES", "120"))
WORKERS = [int(w) for w in os.environ.get("LIVE_DECODE_BENCH_DASK_WORKERS", "1,2").split(",")]
DEVICE = os.environ.get("LIVE_DECODE_BENCH_DASK_DEVICE", "cpu")
CHUNK_FRAMES = 32


def _movies(folder: Path) -> list[Path]:
    from live_decode.api.data import simulate

    cfg = load_config(DEMO_CONFIG)
    camera = {k: v for k, v in asdict(camera_from_config(cfg)).items() if k != "extra"}
    paths = []
    for seed in (1, 2):
        movie = simulate(frames=FRAMES, seed=seed).movie
        path = folder / f"movie{seed}.ome.tif"
        write_movie(path, iter(movie), FRAMES, (64, 64), camera, cfg.microscope.exposure_ms)
        paths.append(path)
    return paths


def _rate(movies: list[Path], workers: int, out: Path) -> float:
    """frames/s of one timed run on a warm local cluster of ``workers`` processes."""
    client = local_client(workers)
    try:
        kw: dict[str, Any] = {"client": client, "chunk_frames": CHUNK_FRAMES, "device": DEVICE}
        localize_many(movies, out / f"warm{workers}", **kw)  # workers started, models loaded
        started = time.perf_counter()
        summary = localize_many(movies, out / f"run{workers}", **kw)
        elapsed_s = time.perf_counter() - started
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    assert summary["status"] == "completed"
    return 2 * FRAMES / elapsed_s


def test_dask_workers_speed_up(benchmark: Any, tmp_path: Path) -> None:
    movies = _movies(tmp_path)
    rates: dict[int, float] = {}

    def sweep() -> None:
        for w in WORKERS:
            rates[w] = _rate(movies, w, tmp_path)

    benchmark.pedantic(sweep, rounds=1, iterations=1)
    base = rates[WORKERS[0]]
    benchmark.extra_info.update(
        device=DEVICE,
        frames=2 * FRAMES,
        frame_px=[64, 64],
        chunk_frames=CHUNK_FRAMES,
        cpu_cores=os.cpu_count(),
        load_avg_1min=round(os.getloadavg()[0], 2),
        frames_per_s={str(w): round(r, 1) for w, r in rates.items()},
        speed_up={str(w): round(r / base, 2) for w, r in rates.items()},
    )
    print(
        f"\nDask on {DEVICE}: "
        + ", ".join(f"{w} workers {r:.1f} frames/s" for w, r in rates.items())
    )
    print("speed-up over 1: " + ", ".join(f"{w}: {r / base:.2f}x" for w, r in rates.items()))
