"""Results channel: topics, stats-only subscribers, validation and missed-message counting."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zmq

from live_decode.errors import ProtocolError
from live_decode.messages import (
    CameraMeta,
    EosMsg,
    FrameMsg,
    FrameStats,
    GapMsg,
    HeartbeatMsg,
    ImageMsg,
    LocsMsg,
    Message,
    StatsMsg,
    WorkerStats,
    empty_locs,
    encode,
)
from live_decode.transport.results import ResultPublisher, ResultSubscriber, topic_for

Ctx = zmq.Context[zmq.Socket[bytes]]
Closing = Callable[[Any], Any]
LOOPBACK = "tcp://127.0.0.1:*"
WORKER = WorkerStats(fps=500.0, latency_ms=4.0, queue_depth=1, dropped_upstream=0)
STATS = (FrameStats(3, 2, 0.5, 1800.0, 55.0, 20.0),)
SYNC = StatsMsg(frame_stats=(), worker=WorkerStats(0.0, 0.0, 0, 0))


def _subscribed(pub: ResultPublisher, sub: ResultSubscriber) -> None:
    """Publish SYNC until the subscription is live (ZeroMQ's slow joiner), then skip the SYNCs."""
    deadline = time.monotonic() + 5
    while sub.recv(timeout_ms=10) is None:
        assert time.monotonic() < deadline, "subscription never reached the publisher"
        pub.publish(SYNC)


def _next_real(sub: ResultSubscriber) -> Message | None:
    while (msg := sub.recv(timeout_ms=5000)) is not None:
        if not (isinstance(msg, StatsMsg) and msg.frame_stats == ()):
            return msg
    return None


def test_topics() -> None:
    locs = LocsMsg(locs=empty_locs(), frame_stats=(), worker=WORKER)
    assert topic_for(locs) == "locs"
    assert topic_for(SYNC) == "stats"
    assert topic_for(ImageMsg(np.zeros((2, 2), np.float32), 25.0, 1, 0)) == "image"
    for msg in (GapMsg(0, 1), EosMsg(), HeartbeatMsg(0)):
        assert topic_for(msg) == "event"


def test_frames_are_not_results(camera: CameraMeta) -> None:
    frame = FrameMsg(index=0, timestamp_ns=0, camera=camera, pixels=np.zeros((4, 4), np.uint16))
    with pytest.raises(ProtocolError, match="preview"):
        topic_for(frame)


def test_batch_reaches_full_and_stats_only_subscribers(ctx: Ctx, closing: Closing) -> None:
    pub = closing(ResultPublisher(ctx, LOOPBACK))
    everything = closing(ResultSubscriber(ctx, pub.endpoint))
    controller = closing(ResultSubscriber(ctx, pub.endpoint, topics=["stats"]))
    _subscribed(pub, everything)
    _subscribed(pub, controller)

    locs = empty_locs(4)
    locs["x_nm"] = [1.0, 2.0, 3.0, 4.0]
    pub.publish_batch(locs, STATS, WORKER)
    pub.publish(EosMsg(last_index=3))

    got_locs = _next_real(everything)
    assert isinstance(got_locs, LocsMsg)
    np.testing.assert_array_equal(got_locs.locs, locs)
    assert got_locs.frame_stats == STATS and got_locs.worker == WORKER
    got_stats = _next_real(everything)
    assert isinstance(got_stats, StatsMsg)
    assert (got_stats.frame_stats, got_stats.worker) == (STATS, WORKER)
    eos = _next_real(everything)
    assert isinstance(eos, EosMsg) and eos.last_index == 3

    stats = _next_real(controller)
    assert isinstance(stats, StatsMsg) and stats.frame_stats == STATS
    assert controller.recv(timeout_ms=50) is None  # no locs, no events for the controller
    assert everything.rejected == controller.rejected == 0


def test_bad_topic_or_payload_is_rejected_and_seq_gaps_are_missed(
    ctx: Ctx, closing: Closing
) -> None:
    sub = closing(ResultSubscriber(ctx, LOOPBACK, bind=True))
    raw = ctx.socket(zmq.PUB)
    raw.connect(sub.endpoint)
    try:
        deadline = time.monotonic() + 5
        while sub.recv(timeout_ms=10) is None:  # wait for the subscription to arrive
            assert time.monotonic() < deadline
            raw.send_multipart([b"event", *encode(HeartbeatMsg(0, seq=0))])
        while sub.recv(timeout_ms=50) is not None:
            pass
        for parts in (
            [b"locs", *encode(HeartbeatMsg(1, seq=1))],  # kind on the wrong topic
            [b"event", b"{not json"],
            [b"locs"],  # topic without a header
        ):
            raw.send_multipart(parts)
        raw.send_multipart([b"event", *encode(HeartbeatMsg(2, seq=1000))])
        msg = sub.recv(timeout_ms=5000)
    finally:
        raw.close(linger=0)
    assert msg == HeartbeatMsg(2, seq=1000)
    assert sub.rejected == 3
    last = sub._last_seq["event"]
    assert last == 1000 and sub.missed > 0


def test_missed_counts_seq_jumps_per_topic(ctx: Ctx, closing: Closing) -> None:
    sub = closing(ResultSubscriber(ctx, LOOPBACK, bind=True))
    for topic, seq in [("stats", 0), ("event", 7), ("stats", 1), ("stats", 4), ("event", 8)]:
        sub._count_missed(topic, seq)
    assert sub.missed == 2
    sub._count_missed("stats", 0)  # publisher restarted: not a miss
    assert sub.missed == 2


def test_unknown_topic_is_a_clear_error(ctx: Ctx) -> None:
    with pytest.raises(ValueError, match="unknown results topic"):
        ResultSubscriber(ctx, LOOPBACK, topics=["loc"])
