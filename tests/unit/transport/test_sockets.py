"""Endpoint parsing and the bind rule: a network address needs CURVE keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import zmq

from live_decode.errors import ConfigError
from live_decode.transport import curve
from live_decode.transport.sockets import open_socket, parse_endpoint

Ctx = zmq.Context[zmq.Socket[bytes]]


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("tcp://127.0.0.1:5555", True),
        ("tcp://127.0.0.2:*", True),
        ("tcp://localhost:5555", True),
        ("tcp://[::1]:5555", True),
        ("ipc:///tmp/live_decode.ipc", True),
        ("inproc://frames", True),
        ("tcp://0.0.0.0:5555", False),
        ("tcp://*:5555", False),
        ("tcp://192.168.1.20:5555", False),
        ("tcp://eth0:5555", False),
        ("tcp://gpu-box.lab:5555", False),
    ],
)
def test_locality(endpoint: str, local: bool) -> None:
    assert parse_endpoint(endpoint).is_local is local


@pytest.mark.parametrize(
    "endpoint",
    [
        "127.0.0.1:5555",
        "udp://127.0.0.1:5555",
        "tcp://127.0.0.1",
        "tcp://:5555",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:70000",
        "tcp://127.0.0.1:http",
        "ipc://",
    ],
)
def test_invalid_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="invalid endpoint"):
        parse_endpoint(endpoint)


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:*", "tcp://*:*"])
def test_network_bind_without_keys_says_how_to_make_them(ctx: Ctx, endpoint: str) -> None:
    with pytest.raises(ConfigError, match=r"without CURVE keys.*live-decode keys"):
        open_socket(ctx, zmq.PULL, endpoint, bind=True)


def test_network_bind_with_keys_is_allowed(ctx: Ctx, tmp_path: Path) -> None:
    curve.generate_key_set(tmp_path)
    handle = open_socket(ctx, zmq.PULL, "tcp://*:*", bind=True, curve=curve.server_keys(tmp_path))
    try:
        assert handle.endpoint.rsplit(":", 1)[1].isdigit()
    finally:
        handle.close()


def test_keys_of_the_wrong_role_are_refused(ctx: Ctx, tmp_path: Path) -> None:
    curve.generate_key_set(tmp_path)
    with pytest.raises(ConfigError, match="needs server keys"):
        open_socket(
            ctx, zmq.PULL, "tcp://127.0.0.1:*", bind=True, curve=curve.client_keys(tmp_path)
        )
    with pytest.raises(ConfigError, match="needs client keys"):
        open_socket(
            ctx, zmq.PUSH, "tcp://127.0.0.1:1", bind=False, curve=curve.server_keys(tmp_path)
        )


def test_loopback_bind_resolves_the_random_port(ctx: Ctx) -> None:
    handle = open_socket(ctx, zmq.PULL, "tcp://127.0.0.1:*", bind=True)
    try:
        assert handle.endpoint.startswith("tcp://127.0.0.1:")
        assert int(handle.endpoint.rsplit(":", 1)[1]) > 0
        with pytest.raises(ConfigError, match="cannot bind"):
            open_socket(ctx, zmq.PULL, handle.endpoint, bind=True)  # port taken
    finally:
        handle.close()
        handle.close()  # idempotent


def test_ipc_endpoint_in_tmp_path(ctx: Ctx, tmp_path: Path) -> None:
    server = open_socket(ctx, zmq.PULL, f"ipc://{tmp_path}/frames.ipc", bind=True)
    client = open_socket(ctx, zmq.PUSH, server.endpoint, bind=False)
    try:
        client.socket.send(b"hello")
        assert server.socket.poll(5000)
        assert server.socket.recv() == b"hello"
    finally:
        client.close()
        server.close()
