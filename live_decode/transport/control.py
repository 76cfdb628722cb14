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
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Final, Literal, get_args

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

ControlMode = Literal["off", "auto", "autotune"]
"""The density controller's modes (``set_mode``)."""
CONTROL_MODES: Final[tuple[ControlMode, ...]] = get_args(ControlMode)
MAX_REQUEST_BYTES: Final = 64 << 10


@dataclass(frozen=True)
class SetLaser:
    """Set the activation laser power (mW, ≥ 0); the density loop allows it in mode off only."""

    name: ClassVar[str] = "set_laser"
    power_mw: float


@dataclass(frozen=True)
class SetTarget:
    """Set the density controller's target (emitters µm⁻² frame⁻¹, ≥ 0)."""

    name: ClassVar[str] = "set_target"
    density_per_um2: float


@dataclass(frozen=True)
class SetMode:
    """Switch the density controller to ``off``, ``auto`` or ``autotune``."""

    name: ClassVar[str] = "set_mode"
    mode: ControlMode


@dataclass(frozen=True)
class Status:
    """Ask the source for its state (answered with a :class:`StatusReply`)."""

    name: ClassVar[str] = "status"


ControlCommand = SetLaser | SetTarget | SetMode | Status
"""A validated control command."""
_COMMANDS: Final[dict[str, type[ControlCommand]]] = {
    c.name: c for c in (SetLaser, SetTarget, SetMode, Status)
}


def command_json(command: ControlCommand) -> dict[str, object]:
    """The request body of ``command``: ``{"cmd": name, **fields}``."""
    return {"cmd": command.name, **asdict(command)}


@dataclass(frozen=True)
class LaserReply:
    """The power the laser was set to (mW), after its own rounding/limits."""

    power_mw: float


@dataclass(frozen=True)
class TargetReply:
    target_density_per_um2: float


@dataclass(frozen=True)
class ModeReply:
    mode: ControlMode


#: Counters of the density loop a status reply carries (flat on the wire).
STATUS_COUNTS: Final = (
    "safety_trips",
    "watchdog_trips",
    "saturations",
    "stale_episodes",
    "stale_measurements",
    "settling_measurements",
    "frames_measured",
    "errors",
)
_STATUS_FIELDS: Final = (
    "laser_mw",
    "mode",
    "target_density_per_um2",
    "limits",
    "actuator",
    "stale",
    "last_event",
)


@dataclass(frozen=True)
class StatusReply:
    """The source's state.

    ``laser_mw`` None: no activation laser; ``mode`` and ``target_density_per_um2`` None: no
    density loop runs. ``limits_mw`` are the laser's (low, high) in mW (wire key ``limits``).
    ``counts`` holds the loop's :data:`STATUS_COUNTS`; ``details`` every further field the loop
    reports (gains, smoothed density, watchdog, autotune model...), JSON values as sent.
    """

    laser_mw: float | None
    mode: ControlMode | None = None
    target_density_per_um2: float | None = None
    limits_mw: tuple[float, float] | None = None
    actuator: str | None = None
    stale: bool = False
    last_event: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    details: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {**self.details, "laser_mw": self.laser_mw}
        if self.mode is not None:
            body["mode"] = self.mode
        if self.target_density_per_um2 is not None:
            body["target_density_per_um2"] = self.target_density_per_um2
        if self.limits_mw is not None:
            body["limits"] = list(self.limits_mw)
        if self.actuator is not None:
            body["actuator"] = self.actuator
        if self.mode is not None:
            body["stale"] = self.stale
            body["last_event"] = self.last_event
        return {**body, **self.counts}

    @classmethod
    def from_json(cls, reply: Mapping[str, object]) -> StatusReply:
        """Parse a status reply (the ``ok`` field, if any, is ignored).

        Raises
        ------
        ProtocolError
            A field of the wrong type.
        """
        mode = reply.get("mode")
        if mode is not None and mode not in CONTROL_MODES:
            raise ProtocolError(f"status: mode must be one of {list(CONTROL_MODES)}, got {mode!r}")
        limits = reply.get("limits")
        limits_mw: tuple[float, float] | None = None
        if limits is not None:
            if not isinstance(limits, list) or len(limits) != 2:
                raise ProtocolError(f"status: limits must be [low, high] in mW, got {limits!r}")
            low, high = _reply_number("limits", limits[0]), _reply_number("limits", limits[1])
            if low is None or high is None:
                raise ProtocolError(f"status: limits must be [low, high] in mW, got {limits!r}")
            limits_mw = (low, high)
        counts = {}
        for key in STATUS_COUNTS:
            n = reply.get(key)
            if n is not None:
                if isinstance(n, bool) or not isinstance(n, int):
                    raise ProtocolError(f"status: {key} must be an integer, got {n!r}")
                counts[key] = n
        skip = {"ok", *_STATUS_FIELDS, *STATUS_COUNTS}
        return cls(
            laser_mw=_reply_number("laser_mw", reply.get("laser_mw")),
            mode=mode,
            target_density_per_um2=_reply_number(
                "target_density_per_um2", reply.get("target_density_per_um2")
            ),
            limits_mw=limits_mw,
            actuator=_reply_str(reply, "actuator"),
            stale=reply.get("stale") is True,
            last_event=_reply_str(reply, "last_event"),
            counts=counts,
            details={k: v for k, v in reply.items() if k not in skip},
        )


ControlReply = LaserReply | TargetReply | ModeReply | StatusReply
"""What a handler answers; sent as ``{"ok": true, **fields}``."""


def reply_json(reply: ControlReply) -> dict[str, object]:
    """The reply's fields as sent (without ``ok``)."""
    return reply.to_json() if isinstance(reply, StatusReply) else asdict(reply)


def _reply_number(key: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"status: {key} must be a number, got {value!r}")
    return float(value)


def _reply_str(reply: Mapping[str, object], key: str) -> str | None:
    value = reply.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(f"status: {key} must be a string, got {value!r}")
    return value


Handler = Callable[[ControlCommand], ControlReply]
"""Carries out a command and says what it did. Raise ``ValueError`` or a ``LiveDecodeError``
to refuse it: the message goes back to the client as ``error``."""


def parse_command(raw: bytes) -> ControlCommand:
    """Validate a request body.

    Raises
    ------
    ProtocolError
        Not a JSON object, unknown ``cmd``, a missing/extra/mistyped argument, an unknown
        mode, or too large.
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
    if not isinstance(name, str) or name not in _COMMANDS:
        raise ProtocolError(f"unknown command {name!r}; expected one of {sorted(_COMMANDS)}")
    kind = _COMMANDS[name]
    spec = [f.name for f in fields(kind)]
    if body.keys() != set(spec):
        raise ProtocolError(f"{name} takes exactly {sorted(spec)}, got {sorted(body)}")
    if kind is SetMode:
        mode = body["mode"]
        if not isinstance(mode, str):
            raise ProtocolError(f"{name}: mode must be a string, got {mode!r}")
        if mode not in CONTROL_MODES:
            raise ProtocolError(
                f"{name}: unknown control mode {mode!r}; use one of {list(CONTROL_MODES)}"
            )
        return SetMode(mode)
    if kind is Status:
        return Status()
    key = spec[0]
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ProtocolError(f"{name}: {key} must be a number >= 0, got {value!r}")
    return SetLaser(float(value)) if kind is SetLaser else SetTarget(float(value))


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
            reply: dict[str, object] = {"ok": True, **reply_json(self.handler(command))}
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
        self._unanswered = 0  # consecutive timeouts: only the first of a streak is a warning
        self._handle: SocketHandle = self._open()

    def _open(self) -> SocketHandle:
        return open_socket(self._context, zmq.REQ, self._target, bind=self._bind, curve=self._curve)

    def request(self, command: ControlCommand) -> dict[str, object]:
        """Send ``command`` and return the reply (always a dict with ``ok``).

        A timeout or an unreadable reply is returned as ``{"ok": False, "error": ...}``.
        """
        body = json.dumps(command_json(command), allow_nan=False).encode()
        for _attempt in range(1 + self.retries):
            socket = self._handle.socket
            socket.send(body)
            if socket.poll(self.timeout_ms, zmq.POLLIN):
                if self._unanswered:
                    log.info(
                        "%s answers again, after %d unanswered attempt(s)",
                        self._target,
                        self._unanswered,
                    )
                    self._unanswered = 0
                return _parse_reply(socket.recv())
            self.timeouts += 1
            self._unanswered += 1
            # A source that ended or went away is polled on by a viewer every few seconds: one
            # warning, then the attempts of that silence at debug level (counted in timeouts).
            log.log(
                logging.WARNING if self._unanswered == 1 else logging.DEBUG,
                "no reply from %s within %d ms; retrying (further attempts are logged at debug "
                "level until it answers)",
                self._target,
                self.timeout_ms,
            )
            self._handle.close(0)
            self._handle = self._open()
        return {
            "ok": False,
            "error": f"no reply from {self._target} after {1 + self.retries} attempt(s) of "
            f"{self.timeout_ms} ms: is the source running and listening there?",
        }

    def set_laser(self, power_mw: float) -> dict[str, object]:
        """Set the activation laser power (mW)."""
        return self.request(SetLaser(power_mw))

    def set_target(self, density_per_um2: float) -> dict[str, object]:
        """Set the density controller's target (emitters µm⁻² frame⁻¹)."""
        return self.request(SetTarget(density_per_um2))

    def set_mode(self, mode: ControlMode) -> dict[str, object]:
        """Switch the controller mode."""
        return self.request(SetMode(mode))

    def status(self) -> StatusReply:
        """Ask the source for its status.

        Raises
        ------
        ProtocolError
            The source refused, did not answer, or sent a malformed status (the message says).
        """
        reply = self.request(Status())
        if reply.get("ok") is not True:
            raise ProtocolError(f"status from {self._target} failed: {reply.get('error')}")
        return StatusReply.from_json(reply)


def _parse_reply(raw: bytes) -> dict[str, object]:
    try:
        reply = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return {"ok": False, "error": f"malformed reply (not JSON): {exc}"}
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        return {"ok": False, "error": f"malformed reply (no ok field): {reply!r}"}
    return reply
