"""Frame stream: delivery, validation at the receiver, drop-and-count with gap messages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zmq

from live_decode.messages import (
    CameraMeta,
    EosMsg,
    FrameMsg,
    GapMsg,
    HeartbeatMsg,
    Limits,
    Message,
    encode,
)
from live_decode.transport.frames import (
    KERNEL_BUFFER_FRAMES,
    MIN_SOCKET_BUFFER_BYTES,
    FramePuller,
    FramePusher,
    socket_buffer_bytes,
)

Ctx = zmq.Context[zmq.Socket[bytes]]
Closing = Callable[[Any], Any]
LOOPBACK = "tcp://127.0.0.1:*"


def _pair(ctx: Ctx, closing: Closing, **pusher: Any) -> tuple[FramePusher, FramePuller]:
    puller = closing(FramePuller(ctx, LOOPBACK, bind=True, rcvhwm=pusher.pop("rcvhwm", 16)))
    push = closing(FramePusher(ctx, puller.endpoint, bind=False, linger_ms=0, **pusher))
    return push, puller


def test_frames_arrive_in_order_with_metadata(
    ctx: Ctx, closing: Closing, camera: CameraMeta
) -> None:
    push, pull = _pair(ctx, closing, lossless=True)
    frames = [np.full((32, 48), i, np.uint16) for i in range(5)]
    for i, pixels in enumerate(frames):
        assert push.send_frame(pixels, index=i, timestamp_ns=1000 + i, camera=camera)
    assert push.send_eos(last_index=4)
    got = [pull.recv(timeout_ms=5000) for _ in range(6)]
    assert [type(m) for m in got] == [FrameMsg] * 5 + [EosMsg]
    for i, msg in enumerate(got[:5]):
        assert isinstance(msg, FrameMsg)
        assert (msg.index, msg.timestamp_ns, msg.camera) == (i, 1000 + i, camera)
        np.testing.assert_array_equal(msg.pixels, frames[i])
    assert [m.seq for m in got if m is not None] == list(range(6))
    assert got[5] == EosMsg(last_index=4, seq=5)
    assert pull.recv(timeout_ms=0) is None
    assert (push.frames_sent, push.frames_dropped, pull.received, pull.rejected) == (5, 0, 6, 0)


def _raw(header: dict[str, Any]) -> bytes:
    return json.dumps(header).encode()


def test_bad_messages_are_rejected_counted_and_the_next_good_one_arrives(
    ctx: Ctx, closing: Closing, camera: CameraMeta, caplog: pytest.LogCaptureFixture
) -> None:
    pull = closing(FramePuller(ctx, LOOPBACK, bind=True, limits=Limits(max_frame_bytes=4096)))
    raw = ctx.socket(zmq.PUSH)
    raw.connect(pull.endpoint)
    frame = {"v": 1, "kind": "frame", "seq": 0, "index": 0, "timestamp_ns": 0,
             "shape": [8, 8], "dtype": "uint16",
             "camera": {k: 1.0 for k in ("pixel_size_nm", "baseline_adu", "e_per_adu",
                                         "em_gain", "qe", "exposure_ms")}}  # fmt: skip
    bad: list[list[bytes]] = [
        [b"\x89PNG not json"],  # malformed header
        [b'"just a string"'],  # not an object
        [_raw({"v": 99, "kind": "eos", "seq": 0})],  # wrong version
        [_raw({"v": 1, "kind": "teleport", "seq": 0})],  # unknown kind
        [_raw(frame), bytes(100)],  # shape x dtype != payload
        [_raw(frame | {"shape": [64, 64]}), bytes(64 * 64 * 2)],  # over max_frame_bytes
        [_raw(frame)],  # truncated multipart: header without payload
    ]
    try:
        for parts in bad:
            raw.send_multipart(parts)
        good = FrameMsg(index=42, timestamp_ns=7, camera=camera, pixels=np.ones((8, 8), np.uint16))
        raw.send_multipart(encode(good))
        with caplog.at_level("WARNING", logger="live_decode.transport"):
            msg = pull.recv(timeout_ms=5000)
    finally:
        raw.close(linger=0)
    assert isinstance(msg, FrameMsg) and msg.index == 42
    assert pull.rejected == len(bad)
    assert pull.received == 1
    assert len([r for r in caplog.records if "rejected" in r.message]) == len(bad)
    assert "exceeds 4096 B" not in (pull.last_rejection or "")  # last one was the truncated frame
    assert "2 part" in (pull.last_rejection or "")


def _drain(pull: FramePuller) -> list[Message]:
    out: list[Message] = []
    while (msg := pull.recv(timeout_ms=5000)) is not None:
        out.append(msg)
        if isinstance(msg, EosMsg):
            return out
    raise AssertionError(f"no eos after {len(out)} messages")


def _check_stream(msgs: list[Message], n: int) -> tuple[int, int]:
    """Frames and gaps tile 0..n-1 exactly, in order; returns (frames, frames in gaps)."""
    expected = frames = gapped = 0
    for msg in msgs:
        if isinstance(msg, FrameMsg):
            assert msg.index == expected
            expected += 1
            frames += 1
        elif isinstance(msg, GapMsg):
            assert msg.first == expected, "a gap must announce exactly the frames that are missing"
            expected += msg.count
            gapped += msg.count
    assert msgs[-1] == EosMsg(last_index=n - 1, seq=msgs[-1].seq)
    assert expected == n
    return frames, gapped


def test_live_pusher_drops_counts_and_announces_gaps(
    ctx: Ctx, closing: Closing, camera: CameraMeta
) -> None:
    # The puller reads nothing until the burst is over: every frame beyond what the queues
    # (SNDHWM + RCVHWM + kernel socket buffers) hold must be dropped, never queued.
    push, pull = _pair(ctx, closing, sndhwm=4, rcvhwm=4)
    pixels = np.zeros((512, 512), np.uint16)
    n = 400
    results = [push.send_frame(pixels, index=i, timestamp_ns=i, camera=camera) for i in range(n)]
    assert push.frames_dropped == results.count(False) > 0
    assert push.frames_sent == results.count(True)
    # Bounded by the queues (4 + 4 messages + a few MB of kernel buffers), not by n.
    assert push.frames_sent <= n // 4
    assert push.send_eos(last_index=n - 1)

    msgs = _drain(pull)
    frames, gapped = _check_stream(msgs, n)
    assert frames == push.frames_sent
    assert gapped == push.frames_dropped
    assert push.gaps_sent == sum(isinstance(m, GapMsg) for m in msgs)
    assert pull.rejected == 0


def _fill_until_full(push: FramePusher, camera: CameraMeta, shape: tuple[int, int]) -> int:
    """Send live frames, at 1 kHz, to a puller that reads nothing, until 50 drops in a row."""
    pixels = np.zeros(shape, np.uint16)
    in_a_row = i = 0
    while in_a_row < 50 and i < 5000:
        in_a_row = (
            0 if push.send_frame(pixels, index=i, timestamp_ns=i, camera=camera) else (in_a_row + 1)
        )
        i += 1
        time.sleep(0.001)  # let the I/O threads move what they can into the kernel buffers
    return push.frames_sent


@pytest.mark.parametrize("shape", [(64, 64), (512, 512)])
def test_frames_in_flight_are_bounded_by_the_queues_when_the_frame_size_is_known(
    ctx: Ctx, closing: Closing, camera: CameraMeta, shape: tuple[int, int]
) -> None:
    frame_bytes = shape[0] * shape[1] * 2
    puller = closing(FramePuller(ctx, LOOPBACK, bind=True, rcvhwm=8, frame_bytes=frame_bytes))
    push = closing(FramePusher(ctx, puller.endpoint, bind=False, sndhwm=8, frame_bytes=frame_bytes))
    in_flight = _fill_until_full(push, camera, shape)
    # HWMs 8 + 8, plus KERNEL_BUFFER_FRAMES per side, doubled by Linux (measured: 20 at both
    # sizes; 340 at 64² and 32 at 512² without frame_bytes).
    assert in_flight <= 8 + 8 + 4 * KERNEL_BUFFER_FRAMES + 2


def test_without_the_frame_size_kernel_buffers_hold_hundreds_of_small_frames(
    ctx: Ctx, closing: Closing, camera: CameraMeta
) -> None:
    """Why ``frame_bytes`` exists: the OS-sized buffers of a loopback connection hold far more
    than the configured queues (measured: 340 frames of 64² with queues of 8 + 8)."""
    push, _ = _pair(ctx, closing, sndhwm=8, rcvhwm=8)
    assert _fill_until_full(push, camera, (64, 64)) > 8 + 8 + 50


def test_socket_buffer_size() -> None:
    assert socket_buffer_bytes(512 * 512 * 2) == KERNEL_BUFFER_FRAMES * 512 * 512 * 2
    assert socket_buffer_bytes(16) == MIN_SOCKET_BUFFER_BYTES


def test_frames_dropped_before_the_worker_connects_become_one_gap(
    ctx: Ctx, closing: Closing, camera: CameraMeta
) -> None:
    # A bound PUSH with no peer cannot queue anything: every frame is dropped until the
    # worker connects; the gap then covers all of them and precedes the first frame.
    push = closing(FramePusher(ctx, LOOPBACK, bind=True, linger_ms=0))
    pixels = np.zeros((16, 16), np.uint16)
    for i in range(3):
        assert not push.send_frame(pixels, index=i, timestamp_ns=i, camera=camera)
    pull = closing(FramePuller(ctx, push.endpoint))
    push.lossless = True  # wait for the connection for the rest of the stream
    for i in range(3, 6):
        assert push.send_frame(pixels, index=i, timestamp_ns=i, camera=camera, timeout_ms=5000)
    assert push.send_eos(last_index=5)
    msgs = _drain(pull)
    assert msgs[0] == GapMsg(first=0, count=3, seq=0)
    assert _check_stream(msgs, 6) == (3, 3)


def test_lossless_send_times_out_into_a_counted_drop(
    ctx: Ctx, closing: Closing, camera: CameraMeta
) -> None:
    push = closing(FramePusher(ctx, LOOPBACK, bind=True, lossless=True, linger_ms=0))
    pixels = np.zeros((16, 16), np.uint16)
    assert not push.send_frame(pixels, index=0, timestamp_ns=0, camera=camera, timeout_ms=20)
    assert (push.frames_dropped, push.frames_sent) == (1, 0)
    assert not push.send_eos(last_index=0, timeout_ms=20)  # nobody there to take the gap


def test_error_and_heartbeat_messages(ctx: Ctx, closing: Closing) -> None:
    push, pull = _pair(ctx, closing)
    assert push.send_error("camera_lost", "no frame for 2 s", timeout_ms=5000)
    error = pull.recv(timeout_ms=5000)
    assert error is not None and error.kind == "error"
    assert push.send_heartbeat()  # the connection is up now: room in the queue
    heartbeat = pull.recv(timeout_ms=5000)
    assert isinstance(heartbeat, HeartbeatMsg) and heartbeat.seq == 1
