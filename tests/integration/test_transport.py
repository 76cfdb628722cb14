"""Transport between real peers: a live source in another process, and CURVE authentication.

The source process pushes full-size frames as fast as it can into a worker that is slower; every
frame must either arrive (in order, with its own pixels) or be announced in a gap, exactly.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from live_decode.errors import ConfigError
from live_decode.messages import CameraMeta, EosMsg, FrameMsg, GapMsg, Message
from live_decode.transport import curve
from live_decode.transport.frames import FramePuller, FramePusher

Ctx = zmq.Context[zmq.Socket[bytes]]
LOOPBACK = "tcp://127.0.0.1:*"
CAMERA = CameraMeta(
    pixel_size_nm=100.0, baseline_adu=100.0, e_per_adu=45.0, em_gain=300.0, qe=0.9, exposure_ms=1.0
)


def _context() -> Iterator[Ctx]:
    context: Ctx = zmq.Context()
    yield context
    context.destroy(linger=0)


server_ctx = pytest.fixture(_context)
client_ctx = pytest.fixture(_context)  # a second context, as a second process would have


# --------------------------------------------------------------------------- live source process
def _live_source(endpoint: str, n: int, queue: mp.Queue[tuple[int, int, int]]) -> None:
    """Push ``n`` 512×512 frames without ever waiting, then eos; report the counters."""
    context: Ctx = zmq.Context()
    # Frame i carries the value i % 4; buffers are never modified after sending (zero-copy).
    buffers = [np.full((512, 512), v, np.uint16) for v in range(4)]
    with FramePusher(context, endpoint, bind=False, sndhwm=4, linger_ms=10_000) as push:
        for i in range(n):
            push.send_frame(buffers[i % 4], index=i, timestamp_ns=time.time_ns(), camera=CAMERA)
        push.send_eos(last_index=n - 1, timeout_ms=20_000)
        queue.put((push.frames_sent, push.frames_dropped, push.gaps_sent))
    context.term()


def test_live_source_process_against_a_slow_worker(server_ctx: Ctx) -> None:
    n = 300
    spawn = mp.get_context("spawn")
    queue: mp.Queue[tuple[int, int, int]] = spawn.Queue()
    with FramePuller(server_ctx, LOOPBACK, bind=True, rcvhwm=4) as pull:
        source = spawn.Process(target=_live_source, args=(pull.endpoint, n, queue), daemon=True)
        source.start()
        try:
            msgs: list[Message] = []
            while not (msgs and isinstance(msgs[-1], EosMsg)):
                msg = pull.recv(timeout_ms=20_000)
                assert msg is not None, "the source went silent before eos"
                msgs.append(msg)
                if isinstance(msg, FrameMsg):
                    assert msg.pixels[0, 0] == msg.pixels[-1, -1] == msg.index % 4
                    time.sleep(0.002)  # the worker's work: slower than the source
            sent, dropped, gaps = queue.get(timeout=20)
        finally:
            source.join(timeout=20)
    assert source.exitcode == 0

    expected = frames = gapped = 0
    for msg in msgs:  # frames and gaps tile 0..n-1 in order, nothing bridged silently
        if isinstance(msg, FrameMsg):
            assert msg.index == expected
            expected, frames = expected + 1, frames + 1
        elif isinstance(msg, GapMsg):
            assert msg.first == expected
            expected, gapped = expected + msg.count, gapped + msg.count
    assert expected == n
    assert (frames, gapped, sum(isinstance(m, GapMsg) for m in msgs)) == (sent, dropped, gaps)
    assert dropped > 0, "the source should have outrun a worker taking 2 ms per frame"
    assert pull.rejected == 0


# --------------------------------------------------------------------------- CURVE
HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def _first_handshake_event(monitor: zmq.Socket[bytes], timeout_s: float = 5.0) -> int:
    deadline = time.monotonic() + timeout_s
    while monitor.poll(max(0, round((deadline - time.monotonic()) * 1000))):
        event = recv_monitor_message(monitor)
        if event["event"] & HANDSHAKE_EVENTS:
            return int(event["event"])
    raise AssertionError("no handshake event from the server within the timeout")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    curve.generate_key_set(tmp_path / "keys")
    curve.generate_key_set(tmp_path / "stranger")  # valid keys, never authorized by the server
    return tmp_path


def _client_curve(case: str, keys: Path) -> curve.ClientKeys | None:
    right = curve.client_keys(keys / "keys")
    if case == "authorized":
        return right
    if case == "stranger":
        stranger = curve.load_keypair(keys / "stranger" / "client.key_secret")
        return curve.ClientKeys(stranger, right.server_public)
    if case == "wrong server key":
        return curve.ClientKeys(right.keypair, curve.client_keys(keys / "stranger").server_public)
    return None  # "no keys": plain text against a CURVE server


FAILED = {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}


@pytest.mark.parametrize(
    ("case", "events"),
    [
        ("authorized", {zmq.EVENT_HANDSHAKE_SUCCEEDED}),
        ("stranger", {zmq.EVENT_HANDSHAKE_FAILED_AUTH}),  # refused by our ZAP handler
        ("no keys", FAILED),  # mechanism mismatch (NULL vs CURVE): which event is libzmq's choice
        ("wrong server key", FAILED),  # the server cannot open the client's HELLO box
    ],
)
def test_curve_server_admits_only_authorized_clients(
    server_ctx: Ctx, client_ctx: Ctx, keys: Path, case: str, events: set[int]
) -> None:
    server = FramePuller(server_ctx, LOOPBACK, bind=True, curve=curve.server_keys(keys / "keys"))
    monitor = server.socket.get_monitor_socket(HANDSHAKE_EVENTS)
    client = FramePusher(
        client_ctx, server.endpoint, bind=False, curve=_client_curve(case, keys), linger_ms=0
    )
    try:
        pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
        assert client.send_frame(pixels, index=5, timestamp_ns=0, camera=CAMERA)  # queued
        assert _first_handshake_event(monitor) in events
        msg = server.recv(timeout_ms=5000 if case == "authorized" else 200)
        if case == "authorized":
            assert isinstance(msg, FrameMsg) and msg.index == 5
            np.testing.assert_array_equal(msg.pixels, pixels)
        else:
            assert msg is None, "a refused client's frame must never be delivered"
    finally:
        client.close()
        server.socket.disable_monitor()
        monitor.close(linger=0)
        server.close()


def test_network_bind_needs_keys_and_works_with_them(server_ctx: Ctx, keys: Path) -> None:
    with pytest.raises(ConfigError, match="live-decode keys"):
        FramePuller(server_ctx, "tcp://0.0.0.0:*", bind=True)
    with FramePuller(
        server_ctx, "tcp://0.0.0.0:*", bind=True, curve=curve.server_keys(keys / "keys")
    ) as pull:
        assert pull.endpoint.startswith("tcp://0.0.0.0:")
