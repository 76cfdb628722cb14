"""Control channel: command validation, replies to everything, lazy-pirate client."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from live_decode.errors import ProtocolError
from live_decode.transport.control import (
    CONTROL_MODES,
    ControlClient,
    ControlCommand,
    ControlReply,
    ControlServer,
    LaserReply,
    ModeReply,
    SetLaser,
    SetMode,
    SetTarget,
    Status,
    StatusReply,
    TargetReply,
    command_json,
    parse_command,
    reply_json,
)

Ctx = zmq.Context[zmq.Socket[bytes]]
Closing = Callable[[Any], Any]
LOOPBACK = "tcp://127.0.0.1:*"


class Laser:
    """A stand-in for the source's command handler."""

    def __init__(self) -> None:
        self.commands: list[ControlCommand] = []

    def __call__(self, command: ControlCommand) -> ControlReply:
        self.commands.append(command)
        match command:
            case SetLaser(power_mw=power) if power > 100:
                raise ValueError("power_mw 500 exceeds the laser's 100 mW")
            case SetTarget(density_per_um2=666.0):
                raise RuntimeError("bug in the handler")
            case SetTarget(density_per_um2=777.0):
                return StatusReply(laser_mw=1.0, details={"value": object()})
            case Status():
                return StatusReply(laser_mw=5.0, mode="off")
            case SetTarget(density_per_um2=target):
                return TargetReply(target)
        return LaserReply(1.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"cmd": "set_laser", "power_mw": 2}', SetLaser(2.0)),
        (b'{"cmd": "set_target", "density_per_um2": 0.5}', SetTarget(0.5)),
        (b'{"cmd": "set_mode", "mode": "auto"}', SetMode("auto")),
        (b'{"cmd": "status"}', Status()),
    ],
)
def test_parse_valid_commands(raw: bytes, expected: ControlCommand) -> None:
    assert parse_command(raw) == expected


@pytest.mark.parametrize(
    "command",
    [SetLaser(0.0), SetLaser(12.5), SetTarget(0.8), Status(), *map(SetMode, CONTROL_MODES)],
)
def test_every_command_round_trips_through_its_json(command: ControlCommand) -> None:
    body = command_json(command)
    assert body["cmd"] == command.name
    assert parse_command(json.dumps(body).encode()) == command


@pytest.mark.parametrize(
    "reply",
    [
        StatusReply(laser_mw=None),  # a source without a laser: null on the wire
        StatusReply(laser_mw=2.5),
        StatusReply(
            laser_mw=8.5,
            mode="auto",
            target_density_per_um2=0.7,
            limits_mw=(0.0, 100.0),
            actuator="sim405",
            stale=True,
            last_event="stale: stats are 2.00 s old",
            counts={"safety_trips": 2, "saturations": 0, "errors": 1},
            details={"kp": 0.5, "autotune": None, "saturation": "high"},
        ),
    ],
)
def test_a_status_reply_round_trips_through_its_json(reply: StatusReply) -> None:
    sent = json.loads(json.dumps({"ok": True, **reply_json(reply)}, allow_nan=False))
    assert StatusReply.from_json(sent) == reply


def test_the_other_replies_are_their_fields() -> None:
    assert reply_json(LaserReply(5.0)) == {"power_mw": 5.0}
    assert reply_json(TargetReply(0.8)) == {"target_density_per_um2": 0.8}
    assert reply_json(ModeReply("autotune")) == {"mode": "autotune"}


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        ({"laser_mw": "5"}, "laser_mw must be a number"),
        ({"laser_mw": 1.0, "mode": "turbo"}, "mode must be one of"),
        ({"laser_mw": 1.0, "limits": [0.0]}, r"limits must be \[low, high\]"),
        ({"laser_mw": 1.0, "safety_trips": 1.5}, "safety_trips must be an integer"),
        ({"laser_mw": 1.0, "last_event": 3}, "last_event must be a string"),
    ],
)
def test_a_malformed_status_reply_is_refused(reply: dict[str, object], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        StatusReply.from_json(reply)


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
        (b'{"cmd": "set_target", "density_per_um2": -0.5}', "must be a number >= 0"),
        (b'{"cmd": "set_mode", "mode": 3}', "must be a string"),
        (b'{"cmd": "set_mode", "mode": "turbo"}', "unknown control mode 'turbo'"),
        (b'{"cmd": "status", "mode": "auto"}', "exactly"),
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
    assert client.set_laser(5.0) == {"ok": True, "power_mw": 1.0}
    assert client.set_target(0.8) == {"ok": True, "target_density_per_um2": 0.8}
    assert client.status() == StatusReply(laser_mw=5.0, mode="off")
    refused = client.set_laser(500.0)
    assert refused == {"ok": False, "error": "power_mw 500 exceeds the laser's 100 mW"}
    unknown = _raw_request(ctx, server.endpoint, b'{"cmd": "fire"}')
    assert unknown["ok"] is False and "unknown command 'fire'" in str(unknown["error"])
    crash = client.set_target(666.0)
    assert crash["ok"] is False and "internal error" in str(crash["error"])
    odd = client.set_target(777.0)
    assert odd["ok"] is False and "JSON serializable" in str(odd["error"])
    assert client.status().laser_mw == 5.0  # still serving after all that
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


def test_client_times_out_recreates_its_socket_and_recovers(
    ctx: Ctx, closing: Closing, caplog: pytest.LogCaptureFixture
) -> None:
    laser = Laser()
    server = closing(ControlServer(ctx, laser, LOOPBACK))  # bound, but nobody serves yet
    client = closing(ControlClient(ctx, server.endpoint, timeout_ms=50, retries=1))
    with caplog.at_level(logging.DEBUG, logger="live_decode.transport"):
        for _ in range(3):  # a viewer polling a source that went away
            with pytest.raises(ProtocolError, match="no reply"):
                client.status()
    assert client.timeouts == 6
    levels = [r.levelno for r in caplog.records if "no reply" in r.getMessage()]
    assert levels == [logging.WARNING] + [logging.DEBUG] * 5  # one warning per silence

    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop, 10))
    thread.start()
    try:
        client.timeout_ms = 5000
        with caplog.at_level(logging.INFO, logger="live_decode.transport"):
            assert client.set_laser(1.5)["ok"] is True  # a fresh socket: not stuck in REQ state
        assert any("answers again, after 6" in r.getMessage() for r in caplog.records)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert laser.commands[-1] == SetLaser(1.5)


def _raw_request(ctx: Ctx, endpoint: str, body: bytes) -> dict[str, object]:
    """One request that no typed command can express; the server's JSON reply."""
    raw = ctx.socket(zmq.REQ)
    raw.connect(endpoint)
    try:
        raw.send(body)
        assert raw.poll(5000)
        reply = json.loads(raw.recv())
        assert isinstance(reply, dict)
        return reply
    finally:
        raw.close(linger=0)
