"""Micro-Manager source throughput: frames/s MMSource delivers into ZeroMQ, vs. popping alone.

Run: ``pytest benchmarks/bench_mm.py --benchmark-only -s`` (or ``python benchmarks/bench_mm.py``).
The simulated camera (a pymmcore-plus Python device) runs at 512×512 uint16 in ``Fast`` mode
(replaying pre-rendered frames) inside a UniMMCore, in two camera regimes:

- ``free``: exposure 0, the camera produces as fast as it can: what the consumer gets is its
  capacity (the camera thread competes with it for the GIL, as a Python camera does);
- ``1kHz``: exposure 1 ms, a fast sCMOS: can the consumer keep up?

Each regime alternates, :data:`ROUNDS` times, a baseline (``popNextImageAndMD`` in a loop that
sleeps 0.5 ms when the buffer is empty) with the source path (``MMSource.read`` →
``FramePusher.send_frame``, tcp loopback, live mode, to a worker process that decodes every
frame), :data:`SECONDS` each. ``extra_info`` holds the median frames/s of both, their ratio
(target ≥ 0.9), and frames lost in the circular buffer or dropped at the pusher.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import zmq

from live_decode.messages import EosMsg, FrameMsg
from live_decode.sources.base import SourceFrame
from live_decode.sources.mm import MMSource
from live_decode.sources.mm_core import close_core
from live_decode.testing.mm import open_sim_core, sim_config
from live_decode.transport.frames import FramePuller, FramePusher

Ctx = zmq.Context[zmq.Socket[bytes]]
SHAPE = (512, 512)
SECONDS, ROUNDS, BUFFER_MB, DRAIN_FRAMES = 2.0, 5, 256, 400
REGIMES = {"1kHz": 1.0, "2kHz": 0.5}  # camera exposure, ms


def _worker(endpoint: str, ready: Any) -> None:
    """Pull and decode frames until an eos (a decoded frame views the received buffer)."""
    context: Ctx = zmq.Context()
    with FramePuller(context, endpoint, rcvhwm=16) as pull:
        ready.set()
        while not isinstance(msg := pull.recv(timeout_ms=60_000), EosMsg | None):
            assert not isinstance(msg, FrameMsg) or msg.pixels.shape == SHAPE
    context.term()


def _pop_only(source: MMSource, seconds: float) -> dict[str, float]:
    """Frames/s popped straight from the core's buffer, and frames lost meanwhile."""
    core = source.core
    core.startContinuousSequenceAcquisition(0)
    popped, expected, lost = 0, 0, 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if core.getRemainingImageCount() > 0:
            _, md = core.popNextImageAndMD(fix=False)
            number = int(md["ImageNumber"])
            lost += number - expected
            expected = number + 1
            popped += 1
        else:
            time.sleep(source.poll_s)
    elapsed = time.perf_counter() - t0
    core.stopSequenceAcquisition()
    return {"fps": popped / elapsed, "lost": lost}


def _through_zmq(source: MMSource, pusher: FramePusher, seconds: float) -> dict[str, float]:
    """Frames/s that MMSource.read hands to ZeroMQ (accepted by send_frame)."""
    sent0, dropped0, lost0 = pusher.frames_sent, pusher.frames_dropped, source.frames_lost
    source.start()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        frame = source.read()
        assert frame is not None
        pusher.send_frame(
            frame.pixels, index=frame.index, timestamp_ns=frame.timestamp_ns, camera=source.camera
        )
    elapsed = time.perf_counter() - t0
    source.stop()
    while source.read() is not None:  # leave the buffer empty for the next phase
        pass
    return {
        "fps": (pusher.frames_sent - sent0) / elapsed,
        "lost": source.frames_lost - lost0,
        "dropped": pusher.frames_dropped - dropped0,
    }


class _Rig:
    """Simulated camera in a UniMMCore, MMSource, FramePusher and a worker process."""

    def __init__(
        self, exposure_ms: float, lossless: bool, endpoint: str = "tcp://127.0.0.1:*"
    ) -> None:
        from live_decode.sources.mm_devices import SimulatedSMLMCamera  # (torch: not in worker)

        cfg = sim_config(fov_px=SHAPE, exposure_ms=1.0, pool_per_um2=5.0)
        self.core = open_sim_core(cfg, camera=SimulatedSMLMCamera(cfg), mode="Fast")
        self.core.setExposure(exposure_ms)
        self.source = MMSource(self.core, buffer_mb=BUFFER_MB, autostart=False)
        self.context: Ctx = zmq.Context()
        self.pusher = FramePusher(self.context, endpoint, lossless=lossless, sndhwm=16)
        spawn = mp.get_context("spawn")
        ready = spawn.Event()
        self.worker = spawn.Process(target=_worker, args=(self.pusher.endpoint, ready), daemon=True)
        self.worker.start()
        if not ready.wait(120):
            raise RuntimeError("the worker process did not start")

    def close(self) -> None:
        self.pusher.send_eos(None, timeout_ms=5000)
        self.worker.join(timeout=30)
        self.pusher.close()
        self.context.term()
        self.source.close()
        close_core(self.core)

    def prefill(self, n: int) -> None:
        """``n`` frames into the circular buffer; the camera is idle afterwards."""
        self.core.startSequenceAcquisition(n, 0, True)
        while self.core.isSequenceRunning():
            time.sleep(0.01)
        if self.core.getRemainingImageCount() != n:
            raise RuntimeError("the circular buffer did not take the whole prefill")
        self.source._base, self.source._expected = self.source._next_index, 0  # new numbering


def measure_live(
    exposure_ms: float, seconds: float = SECONDS, rounds: int = ROUNDS
) -> dict[str, Any]:
    """A running camera: alternate the two phases ``rounds`` times; medians and their ratio."""
    rig = _Rig(exposure_ms, lossless=False)
    pops, zmqs = [], []
    try:
        _through_zmq(rig.source, rig.pusher, 0.5)  # warm-up
        for _ in range(rounds):
            pops.append(_pop_only(rig.source, seconds))
            zmqs.append(_through_zmq(rig.source, rig.pusher, seconds))
    finally:
        rig.close()
    pop_fps = statistics.median(p["fps"] for p in pops)
    zmq_fps = statistics.median(z["fps"] for z in zmqs)
    return {
        "camera": f"SimulatedSMLMCamera Fast {SHAPE[0]}x{SHAPE[1]} uint16, exposure "
        f"{exposure_ms:g} ms",
        "pop_only_fps": round(pop_fps),
        "source_to_zmq_fps": round(zmq_fps),
        "ratio": round(zmq_fps / pop_fps, 3),
        "meets_0_9_target": zmq_fps / pop_fps >= 0.9,
        "pop_only_lost": sum(p["lost"] for p in pops),
        "source_lost": sum(z["lost"] for z in zmqs),
        "pusher_dropped": sum(z["dropped"] for z in zmqs),
        "rounds": rounds,
        "seconds_per_phase": seconds,
    }


def measure_drain(
    n: int = DRAIN_FRAMES, rounds: int = ROUNDS, endpoint: str = "tcp://127.0.0.1:*"
) -> dict[str, Any]:
    """Capacity, camera idle: drain ``n`` buffered frames by popping, by ``MMSource.read``, and
    by reading into ZeroMQ; and send ``n`` already popped frames (the transport alone).

    The ZeroMQ phases are lossless (they wait for the worker process): they count frames
    delivered. Medians and bests of ``rounds``.
    """
    rig = _Rig(0.0, lossless=True, endpoint=endpoint)
    core, source, pusher = rig.core, rig.source, rig.pusher
    rates: dict[str, list[float]] = {"pop": [], "read": [], "read_zmq": [], "zmq_only": []}

    def send(frame: SourceFrame) -> None:
        pusher.send_frame(
            frame.pixels, index=frame.index, timestamp_ns=frame.timestamp_ns, camera=source.camera
        )

    try:
        for _ in range(rounds):
            for phase in rates:
                rig.prefill(n)
                popped = [source.read() for _ in range(n)] if phase == "zmq_only" else []
                t0 = time.perf_counter()
                for i in range(n):
                    if phase == "pop":
                        core.popNextImageAndMD(fix=False)
                    elif phase == "zmq_only":
                        send(popped[i])  # type: ignore[arg-type]
                    elif (frame := source.read()) is not None and phase == "read_zmq":
                        send(frame)
                rates[phase].append(n / (time.perf_counter() - t0))
    finally:
        rig.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    best = {k: max(v) for k, v in rates.items()}
    return {
        "camera": f"idle; {n} buffered {SHAPE[0]}x{SHAPE[1]} uint16 frames",
        "transport": endpoint.split(":", 1)[0],
        **{f"{k}_fps": round(v) for k, v in med.items()},
        **{f"{k}_fps_best": round(v) for k, v in best.items()},
        "read_vs_pop": round(med["read"] / med["pop"], 3),
        "ratio": round(med["read_zmq"] / med["pop"], 3),
        "read_zmq_vs_zmq_only": round(med["read_zmq"] / med["zmq_only"], 3),
        "rounds": rounds,
    }


@pytest.mark.parametrize("regime", [*REGIMES, "drain-tcp", "drain-ipc"])
def test_mm_source_into_zmq_vs_pop_only(benchmark: Any, regime: str, tmp_path: Path) -> None:
    result: dict[str, Any] = {}

    def run() -> None:
        if regime == "drain-tcp":
            result.update(measure_drain())
        elif regime == "drain-ipc":
            result.update(measure_drain(endpoint=f"ipc://{tmp_path}/frames.ipc"))
        else:
            result.update(measure_live(REGIMES[regime]))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    print(f"\n{regime}: {result}")


if __name__ == "__main__":
    for name, exposure in REGIMES.items():
        print(name, measure_live(exposure))
    print("drain-tcp", measure_drain())
    with tempfile.TemporaryDirectory() as tmp:
        print("drain-ipc", measure_drain(endpoint=f"ipc://{tmp}/frames.ipc"))
