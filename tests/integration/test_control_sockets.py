"""ControlLoop on real loopback sockets, plugged into SourceRunner and ControlServer.

A stand-in worker publishes each frame's true density on a results PUB, as the inference worker
does, until it "stops"; the loop (in the runner's ``on_tick``) must then put the simulated laser at
its safe value within the watchdog time, publish why, and answer control requests meanwhile.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from live_decode.control.loop import ControlLoop
from live_decode.messages import ErrorMsg, EventMsg, FrameStats, Message, StatsMsg, WorkerStats
from live_decode.sources.runner import SourceRunner
from live_decode.sources.simulated import SimulatedLaserActuator, SimulatedSource
from live_decode.testing.control_loop import bleaching_config
from live_decode.transport.control import ControlClient, ControlServer, StatusReply
from live_decode.transport.frames import FramePusher
from live_decode.transport.results import ResultPublisher, ResultSubscriber

LOOPBACK = "tcp://127.0.0.1:*"
WORKER = WorkerStats(fps=50.0, latency_ms=20.0, queue_depth=0, dropped_upstream=0)
Ctx = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    context: Ctx = zmq.Context()
    yield context
    context.destroy(linger=0)


def joined(pub: ResultPublisher, sub: ResultSubscriber, probe: Message) -> None:
    """Publish ``probe`` until ``sub`` receives one (ZeroMQ's slow joiner)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pub.publish(probe)
        if sub.recv(timeout_ms=50) is not None:
            while sub.recv(timeout_ms=20) is not None:  # drain the extra probes
                pass
            return
    raise AssertionError("subscriber never joined")


def stats_of(source: SimulatedSource) -> StatsMsg:
    truth = source.last
    assert truth is not None
    nan = math.nan
    row = FrameStats(truth.index, len(truth.truth), truth.density_per_um2, nan, nan, nan)
    return StatsMsg(frame_stats=(row,), worker=WORKER)


def test_worker_stops_laser_goes_safe_within_the_watchdog_time(ctx: Ctx, tmp_path: Path) -> None:
    cfg = bleaching_config(5, mode="auto", watchdog_s=0.3, safe_power_mw=0.0)
    source = SimulatedSource(cfg)
    worker = ResultPublisher(ctx, LOOPBACK)
    stats_sub = ResultSubscriber(ctx, worker.endpoint, topics=("stats", "event"))
    events = ResultPublisher(ctx, LOOPBACK)
    viewer = ResultSubscriber(ctx, events.endpoint, topics=("event",))
    pusher = FramePusher(ctx, LOOPBACK)
    frames_sink = ctx.socket(zmq.PULL)  # queues the frames (and the eos) nobody analyses here
    frames_sink.connect(pusher.endpoint)
    try:
        joined(worker, stats_sub, StatsMsg(frame_stats=(), worker=WORKER))
        joined(events, viewer, ErrorMsg(code="control.probe", message="hello"))
        loop = ControlLoop(
            cfg.control,
            SimulatedLaserActuator(source),
            stats_sub,
            run_dir=tmp_path,
            publisher=events,
        )
        server = ControlServer(ctx, loop.handle, LOOPBACK)
        alive_until, last_stats = 60, [0.0]

        def tick(frame: int) -> None:
            if frame < alive_until:  # the stand-in worker, one frame behind like the real one
                worker.publish(stats_of(source))
                last_stats[0] = time.monotonic()
            loop.on_tick(frame)

        replies: list[dict[str, object]] = []
        statuses: list[StatusReply] = []

        def operator() -> None:
            with ControlClient(ctx, server.endpoint, timeout_ms=2000) as client:
                time.sleep(0.3)
                replies.append(client.set_target(1.2))
                replies.append(client.set_laser(50.0))  # refused: auto mode
                statuses.append(client.status())

        runner = SourceRunner(source, pusher, control=server, max_frames=120, on_tick=tick)
        thread = threading.Thread(target=operator)
        thread.start()
        summary = runner.run()  # camera-paced: 120 frames of 20 ms
        thread.join(10)
        loop.close()
        server.close()
        published = []
        while (msg := viewer.recv(timeout_ms=100)) is not None:
            published.append(msg)
    finally:
        frames_sink.close(0)
        for s in (pusher, viewer, events, stats_sub, worker):
            s.close()

    assert summary.frames_read == 120 and summary.control_requests == 3 and len(replies) == 2
    # The loop ran on stats that came over the wire, then went safe in time.
    assert loop.frames_measured >= alive_until - 5
    assert source.laser_power_mw == 0.0
    [trip] = [e for e in loop.events if e.kind == "watchdog"]
    assert trip.time_s - last_stats[0] <= 0.3 + 0.2  # timeout + a few 20 ms frames of slack
    assert loop.controller.mode == "auto"  # it would resume if the worker came back
    # Commands were served between frames by the runner's control server.
    assert replies[0] == {"ok": True, "target_density_per_um2": 1.2}
    assert replies[1]["ok"] is False and "set_mode off" in str(replies[1]["error"])
    assert statuses[0].mode == "auto" and statuses[0].target_density_per_um2 == 1.2
    # Events were published for the viewer...
    events = [m for m in published if isinstance(m, EventMsg)]
    assert {"target", "watchdog"} <= {e.name for e in events}
    assert all(e.source == "control" for e in events)
    assert not [m for m in published if isinstance(m, ErrorMsg)]  # events are not errors
    # ...and traced.
    assert (tmp_path / "control.csv").is_file() and (tmp_path / "control.png").is_file()


def test_a_worker_error_on_the_wire_sets_the_safe_value(ctx: Ctx) -> None:
    cfg = bleaching_config(6, mode="auto", safe_power_mw=1.0)
    source = SimulatedSource(cfg)
    worker = ResultPublisher(ctx, LOOPBACK)
    sub = ResultSubscriber(ctx, worker.endpoint, topics=("stats", "event"))
    try:
        joined(worker, sub, StatsMsg(frame_stats=(), worker=WORKER))
        loop = ControlLoop(cfg.control, SimulatedLaserActuator(source), sub)
        for _ in range(30):
            sf = source.read()
            assert sf is not None
            worker.publish(stats_of(source))
            time.sleep(0.002)
            loop.on_tick(sf.index)
        worker.publish(ErrorMsg(code="inference", message="CUDA error: device lost"))
        deadline = time.monotonic() + 2.0
        while source.laser_power_mw != 1.0 and time.monotonic() < deadline:
            sf = source.read()
            assert sf is not None
            loop.on_tick(sf.index)
            time.sleep(0.005)
    finally:
        sub.close()
        worker.close()
    assert source.laser_power_mw == 1.0
    assert loop.controller.mode == "off"
    assert any("device lost" in e.message for e in loop.events if e.kind == "worker_error")
