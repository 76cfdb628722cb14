"""The control channel, viewer/CLI → source: JSON commands over REQ/REP.

A request is one JSON object ``{"cmd": NAME, ...arguments}``; the reply is always one JSON
object ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. The server replies to every
request, including malformed ones, so a REQ peer is never left stuck. The client is a "lazy
pirate": after a timeout it discards its socket (a REQ socket that missed its reply is unusable)
and retries on a fresh one. Every command is a "set" or a query, so a retry is harmless.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import zmq

from live_decode.errors import LiveDecodeError, ProtocolError
from live_decode.transport.curve import ClientKeys, ServerKeys
from live_decode.transport.sockets import (
    DEFAULT_CONTROL_ENDPOINT,
    Context,
    SocketEnd,
    SocketHandle,
    open_socket,
)

log = logging.getLogger("live_decode.transport")

#: Command name -> {argument: type}. Numbers must be >= 0.
COMMANDS: Final[Mapping[str, Mapping[str, type]]] = {
    "set_laser": {"power_mw": float},
    "set_target": {"density_per_um2": float},
    "set_mode": {"mode": str},
    "status": {},
}
MAX_REQUEST_BYTES: Final = 64 << 10


@dataclass(frozen=True)
class Command:
    """A validated control command, e.g. ``Command("set_laser", {"power_mw": 5.0})``."""

    name: str
    args: Mapping[str, float | str]


Handler = Callable[[Command], Mapping[str, object]]
"""Carries out a command; returns JSON-serializable reply fields. Raise ``ValueError`` or a
``LiveDecodeError`` to refuse it: the message goes back to the client as ``error``."""


def parse_command(raw: bytes) -> Command:
    """Validate a request body.

    Raises
    ------
    ProtocolError
        Not a JSON object, unknown ``cmd``, a missing/extra/mistyped argument, or too large.
    """
    if len(raw) > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request of {len(raw)} B exceeds {MAX_REQUEST_BYTES} B")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"request is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f'request must be a JSON object like {{"cmd": "status"}}, got {body!r}')
    name = body.pop("cmd", None)
    if not isinstance(name, str) or name not in COMMANDS:
        raise ProtocolError(f"unknown command {name!r}; expected one of {sorted(COMMANDS)}")
    spec = COMMANDS[name]
    if body.keys() != spec.keys():
        raise ProtocolError(f"{name} takes exactly {sorted(spec)}, got {sorted(body)}")
    args: dict[str, float | str] = {}
    for key, kind in spec.items():
        value = body[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ProtocolError(f"{name}: {key} must be a number >= 0, got {value!r}")
            args[key] = float(value)
        elif not isinstance(value, str):
            raise ProtocolError(f"{name}: {key} must be a string, got {value!r}")
        else:
            args[key] = value
    return Command(name, args)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


class ControlServer(SocketEnd):
    """Answers control requests (REP, binds by default) by calling ``handler``.

    Drive it from one thread with :meth:`serve_once` in a loop, or :meth:`serve` until an event.
    Counters: ``served`` (all requests), ``refused`` (invalid or refused by the handler),
    ``handler_errors`` (unexpected exceptions in the handler: logged with their traceback).
    """

    def __init__(
        self,
        context: Context,
        handler: Handler,
        endpoint: str = DEFAULT_CONTROL_ENDPOINT,
        *,
        bind: bool = True,
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        self._handle = open_socket(
            context, zmq.REP, endpoint, bind=bind, curve=curve, options={zmq.MAXMSGSIZE: 1 << 20}
        )
        self.handler = handler
        self.served = 0
        self.refused = 0
        self.handler_errors = 0

    def serve_once(self, timeout_ms: int | None = 100) -> bool:
        """Answer at most one request; False if none came within ``timeout_ms``."""
        socket = self._handle.socket
        if not socket.poll(timeout_ms, zmq.POLLIN):
            return False
        parts = socket.recv_multipart()
        reply = self._reply(parts)
        self.served += 1  # before the reply goes out, so a client sees the count it caused
        socket.send(json.dumps(reply, allow_nan=False).encode())
        return True

    def serve(self, stop: threading.Event, poll_ms: int = 100) -> None:
        """Answer requests until ``stop`` is set (checked every ``poll_ms``)."""
        while not stop.is_set():
            self.serve_once(poll_ms)

    def _reply(self, parts: list[bytes]) -> dict[str, object]:
        try:
            if len(parts) != 1:
                raise ProtocolError(f"a request is one JSON part, got {len(parts)} parts")
            command = parse_command(parts[0])
            result = dict(self.handler(command))
            reply: dict[str, object] = {"ok": True, **result}
            json.dumps(reply, allow_nan=False)  # fail here, not after REP has no reply
            return reply
        except (LiveDecodeError, ValueError, TypeError) as exc:
            self.refused += 1
            log.warning("control request refused: %s", exc)
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # the handler's bug must not leave the client unanswered
            self.handler_errors += 1
            log.exception("control handler failed")
            return {"ok": False, "error": f"internal error in the handler: {exc!r}"}


class ControlClient(SocketEnd):
    """Sends control commands (REQ, connects by default); never hangs.

    Parameters
    ----------
    timeout_ms
        Wait for each reply at most this long.
    retries
        Further attempts, each on a fresh socket, after a timeout.
    """

    def __init__(
        self,
        context: Context,
        endpoint: str = DEFAULT_CONTROL_ENDPOINT,
        *,
        timeout_ms: int = 1000,
        retries: int = 2,
        bind: bool = False,
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        self._context = context
        self._target = endpoint
        self._bind = bind
        self._curve = curve
        self.timeout_ms = timeout_ms
        self.retries = retries
        self.timeouts = 0
        self._handle: SocketHandle = self._open()

    def _open(self) -> SocketHandle:
        return open_socket(self._context, zmq.REQ, self._target, bind=self._bind, curve=self._curve)

    def request(self, cmd: str, **args: float | str) -> dict[str, object]:
        """Send ``{"cmd": cmd, **args}`` and return the reply (always a dict with ``ok``).

        A timeout or an unreadable reply is returned as ``{"ok": False, "error": ...}``.
        """
        body = json.dumps({"cmd": cmd, **args}, allow_nan=False).encode()
        for _attempt in range(1 + self.retries):
            socket = self._handle.socket
            socket.send(body)
            if socket.poll(self.timeout_ms, zmq.POLLIN):
                return _parse_reply(socket.recv())
            self.timeouts += 1
            log.warning("no reply from %s within %d ms; retrying", self._target, self.timeout_ms)
            self._handle.close(0)
            self._handle = self._open()
        return {
            "ok": False,
            "error": f"no reply from {self._target} after {1 + self.retries} attempt(s) of "
            f"{self.timeout_ms} ms: is the source running and listening there?",
        }

    def set_laser(self, power_mw: float) -> dict[str, object]:
        """Set the activation laser power (mW)."""
        return self.request("set_laser", power_mw=power_mw)

    def set_target(self, density_per_um2: float) -> dict[str, object]:
        """Set the density controller's target (emitters µm⁻² frame⁻¹)."""
        return self.request("set_target", density_per_um2=density_per_um2)

    def set_mode(self, mode: str) -> dict[str, object]:
        """Switch the controller mode (the handler defines the modes)."""
        return self.request("set_mode", mode=mode)

    def status(self) -> dict[str, object]:
        """Ask the source for its status."""
        return self.request("status")


def _parse_reply(raw: bytes) -> dict[str, object]:
    try:
        reply = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return {"ok": False, "error": f"malformed reply (not JSON): {exc}"}
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        return {"ok": False, "error": f"malformed reply (no ok field): {reply!r}"}
    return reply
