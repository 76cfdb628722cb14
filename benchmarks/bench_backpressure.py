"""Back-pressure: frames in flight and result latency after a 2 s worker stall (issue 12).

Run: ``pytest benchmarks/bench_backpressure.py --benchmark-only``. A live camera (FramePusher,
never waits) sends uint16 frames at a fixed rate over tcp loopback to a consumer that is 20 %
faster than the camera, except for one 2 s stall. Every frame that reaches the consumer is
timestamped; ``extra_info`` reports, per frame size and with/without ``frame_bytes`` (kernel
socket buffers bounded to :data:`~live_decode.transport.frames.KERNEL_BUFFER_FRAMES` frames):

- ``frames_in_flight_max``: most frames sent but not yet received (HWMs 16 + 16 configured);
- ``stale_after_stall_s``: how long after the stall frames older than 100 ms kept arriving (the
  backlog a worker must chew through before its results are current again);
- ``worst_latency_after_stall_ms``: the oldest frame received 50 ms or more after the stall;
- ``frames_dropped``: what the stall cost instead (counted, announced as gaps).

The consumer runs in a thread of the benchmark process: ZeroMQ's I/O threads and the kernel do
the queueing, which is what is measured.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
import zmq

from live_decode.messages import CameraMeta, FrameMsg
from live_decode.transport.frames import FramePuller, FramePusher

Ctx = zmq.Context[zmq.Socket[bytes]]
CAMERA = CameraMeta(
    pixel_size_nm=100.0, baseline_adu=100.0, e_per_adu=45.0, em_gain=300.0, qe=0.9, exposure_ms=1.0
)
HWM = 16
STALL_AT_S, STALL_S, RUN_S = 1.0, 2.0, 5.0
STALE_MS = 100.0
CASES = {"64x64 at 1 kHz": ((64, 64), 1000.0), "512x512 at 200 Hz": ((512, 512), 200.0)}


def _stalled_stream(shape: tuple[int, int], fps: float, bounded: bool) -> dict[str, Any]:
    context: Ctx = zmq.Context()
    frame_bytes = shape[0] * shape[1] * 2 if bounded else None
    push = FramePusher(context, "tcp://127.0.0.1:*", sndhwm=HWM, frame_bytes=frame_bytes)
    pull = FramePuller(context, push.endpoint, rcvhwm=HWM, frame_bytes=frame_bytes)
    received: list[tuple[float, float]] = []  # (receive time s, latency ms)
    stop = threading.Event()
    t0 = time.time()

    def consume() -> None:
        stalled = False
        due = time.time()
        while not stop.is_set():
            if not stalled and time.time() - t0 > STALL_AT_S:
                time.sleep(STALL_S)  # the worker stalls (a GC pause, a busy GPU...)
                stalled, due = True, time.time()
            msg = pull.recv(timeout_ms=50)
            if isinstance(msg, FrameMsg):
                now_ns = time.time_ns()
                received.append((now_ns / 1e9 - t0, (now_ns - msg.timestamp_ns) / 1e6))
                due += 1.0 / (1.2 * fps)  # 20 % faster than the camera
                time.sleep(max(0.0, due - time.time()))

    thread = threading.Thread(target=consume)
    thread.start()
    pixels = np.zeros(shape, np.uint16)
    in_flight_max = i = 0
    try:
        while time.time() - t0 < RUN_S:
            push.send_frame(pixels, index=i, timestamp_ns=time.time_ns(), camera=CAMERA)
            i += 1
            in_flight_max = max(in_flight_max, push.frames_sent - len(received))
            time.sleep(max(0.0, t0 + i / fps - time.time()))
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
        push.close(linger_ms=0)
        pull.close()
        context.term()
    end = STALL_AT_S + STALL_S
    late = [t for t, lat in received if t > end and lat > STALE_MS]
    after = [lat for t, lat in received if t > end + 0.05]
    return {
        "frames_offered": i,
        "frames_sent": push.frames_sent,
        "frames_dropped": push.frames_dropped,
        "frames_in_flight_max": in_flight_max,
        "configured_queue_frames": 2 * HWM,
        "stale_after_stall_s": round(max(late) - end, 3) if late else 0.0,
        "worst_latency_after_stall_ms": round(max(after), 1) if after else None,
    }


@pytest.mark.parametrize("bounded", [True, False], ids=["frame_bytes", "os_buffers"])
@pytest.mark.parametrize("case", list(CASES))
def test_stall_costs_drops_not_stale_backlog(benchmark: Any, case: str, bounded: bool) -> None:
    shape, fps = CASES[case]
    result: dict[str, Any] = {}

    def one_round() -> None:
        result.update(_stalled_stream(shape, fps, bounded))

    benchmark.pedantic(one_round, rounds=1, iterations=1)
    benchmark.extra_info.update(case=case, kernel_buffers_bounded=bounded, **result)
    assert result["frames_dropped"] > 0  # the stall did overflow the queues
    if bounded:
        assert result["frames_in_flight_max"] <= 2 * HWM + 8
