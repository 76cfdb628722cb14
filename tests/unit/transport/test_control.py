"""Control channel: command validation, replies to everything, lazy-pirate client."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import zmq

from live_decode.errors import ProtocolError
from live_decode.transport.control import Command, ControlClient, ControlServer, parse_command

Ctx = zmq.Context[zmq.Socket[bytes]]
Closing = Callable[[Any], Any]
LOOPBACK = "tcp://127.0.0.1:*"


class Laser:
    """A stand-in for the source's command handler."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def __call__(self, command: Command) -> Mapping[str, object]:
        self.commands.append(command)
        if command.name == "set_laser" and float(command.args["power_mw"]) > 100:
            raise ValueError("power_mw 500 exceeds the laser's 100 mW")
        if command.name == "set_mode" and command.args["mode"] == "crash":
            raise RuntimeError("bug in the handler")
        if command.name == "set_mode" and command.args["mode"] == "unserializable":
            return {"value": object()}
        return {"power_mw": 5.0, "mode": "manual"} if command.name == "status" else {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"cmd": "set_laser", "power_mw": 2}', Command("set_laser", {"power_mw": 2.0})),
        (
            b'{"cmd": "set_target", "density_per_um2": 0.5}',
            Command("set_target", {"density_per_um2": 0.5}),
        ),
        (b'{"cmd": "set_mode", "mode": "auto"}', Command("set_mode", {"mode": "auto"})),
        (b'{"cmd": "status"}', Command("status", {})),
    ],
)
def test_parse_valid_commands(raw: bytes, expected: Command) -> None:
    assert parse_command(raw) == expected


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"set_laser 5", "not UTF-8 JSON"),
        (b'["set_laser", 5]', "JSON object"),
        (b'{"cmd": "fire"}', "unknown command 'fire'"),
        (b'{"power_mw": 5}', "unknown command None"),
        (b'{"cmd": "set_laser"}', "exactly"),
        (b'{"cmd": "set_laser", "power_mw": 5, "powre_mw": 6}', "exactly"),
        (b'{"cmd": "set_laser", "power_mw": "5"}', "must be a number"),
        (b'{"cmd": "set_laser", "power_mw": -1}', "must be a number >= 0"),
        (b'{"cmd": "set_laser", "power_mw": NaN}', "not UTF-8 JSON"),
        (b'{"cmd": "set_laser", "power_mw": true}', "must be a number"),
        (b'{"cmd": "set_mode", "mode": 3}', "must be a string"),
        (b'{"cmd": "status", "pad": "' + b"x" * 70000 + b'"}', "exceeds"),
    ],
)
def test_parse_rejects(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        parse_command(raw)


@pytest.fixture
def served(ctx: Ctx, closing: Closing) -> Iterator[tuple[ControlServer, Laser]]:
    laser = Laser()
    server = ControlServer(ctx, laser, LOOPBACK)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 10))
    thread.start()
    yield server, laser
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_every_request_gets_a_reply(
    ctx: Ctx, closing: Closing, served: tuple[ControlServer, Laser]
) -> None:
    server, laser = served
    client = closing(ControlClient(ctx, server.endpoint, timeout_ms=5000))
    assert client.set_laser(5.0) == {"ok": True}
    assert client.set_target(0.8) == {"ok": True}
    assert client.status() == {"ok": True, "power_mw": 5.0, "mode": "manual"}
    refused = client.set_laser(500.0)
    assert refused == {"ok": False, "error": "power_mw 500 exceeds the laser's 100 mW"}
    unknown = client.request("fire")
    assert unknown["ok"] is False and "unknown command 'fire'" in str(unknown["error"])
    crash = client.set_mode("crash")
    assert crash["ok"] is False and "internal error" in str(crash["error"])
    odd = client.set_mode("unserializable")
    assert odd["ok"] is False and "JSON serializable" in str(odd["error"])
    assert client.status()["ok"] is True  # still serving after all that
    assert [c.name for c in laser.commands][:3] == ["set_laser", "set_target", "status"]
    assert (server.served, server.refused, server.handler_errors) == (8, 3, 1)
    assert client.timeouts == 0


def test_multipart_request_is_answered_with_an_error(
    ctx: Ctx, served: tuple[ControlServer, Laser]
) -> None:
    server, _ = served
    raw = ctx.socket(zmq.REQ)
    raw.connect(server.endpoint)
    try:
        raw.send_multipart([b'{"cmd": "status"}', b"extra"])
        assert raw.poll(5000)
        assert b"one JSON part" in raw.recv()
    finally:
        raw.close(linger=0)


def test_client_times_out_recreates_its_socket_and_recovers(ctx: Ctx, closing: Closing) -> None:
    laser = Laser()
    server = closing(ControlServer(ctx, laser, LOOPBACK))  # bound, but nobody serves yet
    client = closing(ControlClient(ctx, server.endpoint, timeout_ms=50, retries=1))
    reply = client.status()
    assert reply["ok"] is False and "no reply" in str(reply["error"])
    assert client.timeouts == 2

    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 10))
    thread.start()
    try:
        client.timeout_ms = 5000
        assert client.set_laser(1.5) == {"ok": True}  # a fresh socket: not stuck in REQ state
    finally:
        stop.set()
        thread.join(timeout=5)
    assert laser.commands[-1] == Command("set_laser", {"power_mw": 1.5})
