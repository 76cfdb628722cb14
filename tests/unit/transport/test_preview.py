"""Preview: one-part packing and latest-frame-only delivery."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zmq

from live_decode.errors import ProtocolError
from live_decode.messages import CameraMeta, FrameMsg
from live_decode.transport.preview import PreviewPublisher, PreviewSubscriber, pack, unpack

Ctx = zmq.Context[zmq.Socket[bytes]]
Closing = Callable[[Any], Any]
LOOPBACK = "tcp://127.0.0.1:*"


def test_pack_round_trip(camera: CameraMeta) -> None:
    pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
    msg = unpack(memoryview(pack(FrameMsg(3, 9, camera, pixels, seq=2))))
    assert (msg.index, msg.timestamp_ns, msg.seq, msg.camera) == (3, 9, 2, camera)
    np.testing.assert_array_equal(msg.pixels, pixels)


@pytest.mark.parametrize(
    ("buffer", "match"),
    [
        (b"\x01", "too short"),
        (b"\xff\x00\x00\x00{}", "exceeds the message"),
        (b"\x02\x00\x00\x00{}", "version"),
    ],
)
def test_unpack_rejects(buffer: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        unpack(memoryview(buffer))


def test_subscriber_gets_the_latest_frame_only(
    ctx: Ctx, closing: Closing, camera: CameraMeta
) -> None:
    pub = closing(PreviewPublisher(ctx, LOOPBACK, max_rate_hz=None))
    sub = closing(PreviewSubscriber(ctx, pub.endpoint))
    pixels = np.zeros((64, 64), np.uint16)
    deadline = time.monotonic() + 5
    while sub.latest(timeout_ms=10) is None:  # slow joiner: wait for the subscription
        assert time.monotonic() < deadline
        pub.offer(pixels, index=0, timestamp_ns=0, camera=camera)

    n = 50
    for i in range(1, n + 1):
        assert pub.offer(pixels, index=i, timestamp_ns=i, camera=camera)
    seen = []
    while (msg := sub.latest(timeout_ms=5000)) is not None:
        seen.append(msg.index)
        if msg.index == n:
            break
    assert seen[-1] == n
    assert len(seen) < n  # conflated: the viewer never works through a backlog
    assert sub.rejected == 0


def test_publisher_limits_its_rate(ctx: Ctx, closing: Closing, camera: CameraMeta) -> None:
    pub = closing(PreviewPublisher(ctx, LOOPBACK, max_rate_hz=1e-3))
    pixels = np.zeros((8, 8), np.uint16)
    sent = [pub.offer(pixels, index=i, timestamp_ns=i, camera=camera) for i in range(5)]
    assert sent == [True, False, False, False, False]
    assert pub.sent == 1
