"""Memory growth per frame of the supervisor's run state (issue 12: flat over a day at 1 kHz).

Run: ``pytest benchmarks/bench_supervisor_memory.py --benchmark-only``. The supervisor absorbs
every ``stats`` batch the worker publishes (:meth:`RunState.absorb`: totals, the last-50 window,
the density trace for ``density.png``, the last error lines). This feeds it :data:`N_FRAMES`
frames in batches of :data:`BATCH` (as a worker at 1 kHz publishes them), measures the traced
heap after a warm-up and at the end, and reports bytes per frame and the extrapolation to 8 h at
1 kHz in ``extra_info``. Before issue 12 the state kept every ``FrameStats``: ~310 B/frame,
~9 GB over 8 h.
"""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from live_decode.messages import ErrorMsg, FrameStats, StatsMsg, WorkerStats
from live_decode.pipeline.supervisor import RunState

N_FRAMES = 400_000
WARM_UP_FRAMES = 50_000
BATCH = 32
FRAMES_8H_AT_1KHZ = 8 * 3600 * 1000
WORKER = WorkerStats(fps=1000.0, latency_ms=3.0, queue_depth=0, dropped_upstream=0)


def _feed(state: RunState, first: int, last: int) -> None:
    for start in range(first, last, BATCH):
        frames = range(start, min(start + BATCH, last))
        stats = tuple(FrameStats(f, 12, 1.0 + (f % 7) * 0.1, 3e3, 50.0, 20.0) for f in frames)
        state.absorb(StatsMsg(frame_stats=stats, worker=WORKER))
        if start % 10_000 == 0:
            state.absorb(ErrorMsg(code="rejected_message", message=f"bad frame near {start}"))


def _growth_bytes_per_frame() -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        state = RunState()
        _feed(state, 0, WARM_UP_FRAMES)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        _feed(state, WARM_UP_FRAMES, N_FRAMES)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state.frames_localized == N_FRAMES
    per_frame = (after - before) / (N_FRAMES - WARM_UP_FRAMES)
    return {
        "bytes_per_frame": round(per_frame, 4),
        "state_bytes": after,
        "extrapolated_8h_1khz_mb": round(per_frame * FRAMES_8H_AT_1KHZ / 1e6, 2),
        "density_trace_points": len(state.trace),
    }


def test_supervisor_state_memory_is_flat(benchmark: Any) -> None:
    info = benchmark.pedantic(_growth_bytes_per_frame, rounds=1, iterations=1)
    benchmark.extra_info.update(info)
    print(info)
