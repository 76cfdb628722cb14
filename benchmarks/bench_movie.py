"""Raw recording and replay reading: what keeping the raw data costs the source process.

Run: ``pytest benchmarks/bench_movie.py --benchmark-only``. One round appends :data:`N_FRAMES`
uint16 frames to a :class:`~live_decode.io.movie.MovieRecorder` (chunks of pages, BigTIFF) and
closes it (OME-XML); ``extra_info`` has µs per appended frame and per frame read back through
:class:`~live_decode.io.movie.TiffMovie` (memory-mapped pages). Target: appending costs the
source well under a frame period at 1 kHz for 64² (≤ 200 µs) and is disk-bound at 512².
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from live_decode.io.movie import MovieRecorder, TiffMovie

N_FRAMES = {64: 2000, 512: 200}


@pytest.mark.parametrize("side", sorted(N_FRAMES))
def test_record_then_read(benchmark: Any, tmp_path: Path, side: int) -> None:
    n = N_FRAMES[side]
    frame = np.random.default_rng(0).integers(100, 4000, (side, side), dtype=np.uint16)
    path = tmp_path / "raw.ome.tif"
    timings: dict[str, float] = {}

    def record() -> None:
        rec = MovieRecorder(path, {"pixel_size_nm": 100.0}, frame_interval_ms=1.0)
        t0 = time.perf_counter()
        for i in range(n):
            rec.append(frame, i)
        timings["append_us_per_frame"] = (time.perf_counter() - t0) / n * 1e6
        rec.close()

    benchmark.pedantic(record, rounds=3, iterations=1)
    movie = TiffMovie(path)
    t0 = time.perf_counter()
    total = sum(int(movie.frame(i)[0, 0]) for i in range(n))
    timings["read_us_per_frame"] = (time.perf_counter() - t0) / n * 1e6
    assert movie.mapped and total == n * int(frame[0, 0])
    movie.close()
    benchmark.extra_info.update({k: round(v, 1) for k, v in timings.items()})
