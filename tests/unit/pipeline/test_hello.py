"""The ``hello`` message: the source's camera before acquisition, over real loopback sockets."""

from __future__ import annotations

import json

import pytest
import zmq

from live_decode.errors import ProtocolError
from live_decode.messages import CameraMeta, HelloMsg, decode, encode
from live_decode.transport.frames import FramePuller, FramePusher

CAMERA = CameraMeta(
    pixel_size_nm=108.0,
    baseline_adu=100.0,
    e_per_adu=0.5,
    em_gain=1.0,
    qe=0.8,
    exposure_ms=20.0,
    read_noise_e=1.6,
    extra={"camera": "sCMOS"},
)


def test_hello_travels_the_frame_stream_unchanged() -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with (
            FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True) as push,
            FramePuller(ctx, push.endpoint) as pull,
        ):
            assert push.send_hello(CAMERA, (512, 256), live=True, timeout_ms=5000)
            got = pull.recv(timeout_ms=5000)
    finally:
        ctx.destroy(linger=0)
    assert isinstance(got, HelloMsg)
    assert (got.camera, got.shape_px, got.live) == (CAMERA, (512, 256), True)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [("shape", [0, 64], "shape must be"), ("shape", [64], "shape must be"), ("live", 1, "live")],
)
def test_a_malformed_hello_is_rejected(key: str, value: object, says: str) -> None:
    header, *payload = encode(HelloMsg(camera=CAMERA, shape_px=(64, 64), live=False))
    data = json.loads(bytes(header))
    data[key] = value
    with pytest.raises(ProtocolError, match=says):
        decode([json.dumps(data).encode(), *payload])
