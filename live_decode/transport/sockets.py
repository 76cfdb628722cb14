"""Opening and closing ZeroMQ sockets: endpoint checks, socket options, CURVE, receive loop.

Every socket in live_decode is opened by :func:`open_socket`, which enforces the one security rule
of DESIGN.md §1: a socket may bind to a network (non-loopback) address only with CURVE keys.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import zmq

from live_decode.closeable import Closeable
from live_decode.endpoints import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_FRAMES_PORT,
    DEFAULT_PREVIEW_PORT,
    DEFAULT_RESULTS_PORT,
    RunEndpoints,
)
from live_decode.errors import ConfigError
from live_decode.messages import WirePart
from live_decode.transport.curve import (
    ClientKeys,
    ServerKeys,
    acquire_authenticator,
    apply_client_keys,
    apply_server_keys,
    release_authenticator,
)

log = logging.getLogger("live_decode.transport")

Context = zmq.Context[zmq.Socket[bytes]]
Socket = zmq.Socket[bytes]

# Defaults are loopback only; see DESIGN.md §1 for the roles.
DEFAULT_FRAMES_ENDPOINT: Final = f"tcp://127.0.0.1:{DEFAULT_FRAMES_PORT}"
DEFAULT_PREVIEW_ENDPOINT: Final = f"tcp://127.0.0.1:{DEFAULT_PREVIEW_PORT}"
DEFAULT_RESULTS_ENDPOINT: Final = f"tcp://127.0.0.1:{DEFAULT_RESULTS_PORT}"
DEFAULT_CONTROL_ENDPOINT: Final = f"tcp://127.0.0.1:{DEFAULT_CONTROL_PORT}"

_TRANSPORTS: Final = ("tcp", "ipc", "inproc")


@dataclass(frozen=True)
class Endpoint:
    """A parsed ZeroMQ endpoint: ``tcp://host:port`` (port may be ``*``), ``ipc://path``, ..."""

    transport: str
    address: str
    host: str = ""
    port: str = ""

    @property
    def is_local(self) -> bool:
        """True for ipc/inproc and for tcp on a loopback address (127.0.0.0/8, ::1, localhost)."""
        if self.transport != "tcp":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:  # "*", an interface name or a host name: reachable from outside
            return False


def parse_endpoint(endpoint: str) -> Endpoint:
    """Split and check an endpoint string.

    Raises
    ------
    ConfigError
        If the transport is not tcp/ipc/inproc, or a tcp endpoint lacks a host or a valid port.
    """
    transport, sep, address = endpoint.partition("://")
    if not sep or transport not in _TRANSPORTS or not address:
        raise ConfigError(
            f"invalid endpoint {endpoint!r}: use tcp://HOST:PORT, ipc://PATH or inproc://NAME"
        )
    if transport != "tcp":
        return Endpoint(transport, address)
    host, colon, port = address.rpartition(":")
    port_ok = port == "*" or (port.isdigit() and 0 < int(port) < 65536)
    if not colon or not host or not port_ok:
        raise ConfigError(
            f"invalid endpoint {endpoint!r}: a tcp endpoint needs a host and a port 1-65535 "
            "(or * for a random free port), e.g. tcp://127.0.0.1:5555"
        )
    return Endpoint(transport, address, host, port)


def check_endpoints(endpoints: RunEndpoints) -> None:
    """:func:`parse_endpoint` on each endpoint of a run that is used.

    Raises
    ------
    ConfigError
        For the first malformed one.
    """
    for endpoint in endpoints.all():
        parse_endpoint(endpoint)


class SocketHandle:
    """An open socket, the endpoint it actually bound/connected to, and its CURVE bookkeeping."""

    def __init__(self, socket: Socket, endpoint: str, *, holds_authenticator: bool) -> None:
        self.socket = socket
        self.endpoint = endpoint
        self._holds_authenticator = holds_authenticator

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket, waiting up to ``linger_ms`` for queued messages. Idempotent."""
        if self.socket.closed:
            return
        context = self.socket.context
        self.socket.close(linger=linger_ms)
        if self._holds_authenticator:
            release_authenticator(context)
            self._holds_authenticator = False


class SocketEnd(Closeable):
    """Base of our socket wrappers: ``endpoint`` and ``socket`` of ``self._handle``; ``close``.

    Subclasses set ``self._handle`` (from :func:`open_socket`) in ``__init__``.
    """

    _handle: SocketHandle

    @property
    def endpoint(self) -> str:
        """The resolved endpoint (with the actual port when bound to ``*``)."""
        return self._handle.endpoint

    @property
    def socket(self) -> Socket:
        """The ZeroMQ socket, e.g. to register in a :class:`zmq.Poller`."""
        return self._handle.socket

    def close(self, linger_ms: int = 0) -> None:
        """Close the socket, waiting up to ``linger_ms`` for queued messages. Idempotent."""
        self._handle.close(linger_ms)


def open_socket(
    context: Context,
    socket_type: int,
    endpoint: str,
    *,
    bind: bool,
    curve: ServerKeys | ClientKeys | None = None,
    options: Mapping[int, int] | None = None,
) -> SocketHandle:
    """Create a socket, set ``options`` and CURVE keys, then bind or connect it.

    Parameters
    ----------
    context
        The process's ZeroMQ context.
    socket_type
        ``zmq.PUSH``, ``zmq.PULL``, ``zmq.PUB`` ...
    endpoint
        Where to bind or connect. With ``tcp://HOST:*`` a free port is chosen; the returned
        handle's ``endpoint`` is the resolved address.
    bind
        Bind (the long-lived side) or connect.
    curve
        :class:`ServerKeys` on the binding side, :class:`ClientKeys` on the connecting side.
    options
        Socket options set before bind/connect (HWMs in messages, ``zmq.CONFLATE``...).

    Raises
    ------
    ConfigError
        Bad endpoint; a network bind without CURVE keys; keys of the wrong role.
    """
    parsed = parse_endpoint(endpoint)
    if bind and not parsed.is_local and not isinstance(curve, ServerKeys):
        raise ConfigError(
            f"refusing to bind {endpoint} without CURVE keys: it is reachable from the network. "
            "Generate keys with `live-decode keys DIR` and pass the server keys, or bind to "
            "127.0.0.1 (default) and tunnel."
        )
    if bind and isinstance(curve, ClientKeys):
        raise ConfigError(f"binding {endpoint} needs server keys (ServerKeys), not client keys")
    if not bind and isinstance(curve, ServerKeys):
        raise ConfigError(f"connecting to {endpoint} needs client keys (ClientKeys), not server")
    if not bind and not parsed.is_local and curve is None:
        log.warning("connecting to %s without CURVE keys: traffic is not encrypted", endpoint)

    socket = context.socket(socket_type)
    holds_authenticator = False
    try:
        socket.setsockopt(zmq.LINGER, 0)
        if parsed.host.startswith("["):
            socket.setsockopt(zmq.IPV6, 1)
        for option, value in (options or {}).items():
            socket.setsockopt(option, value)
        if isinstance(curve, ServerKeys):
            acquire_authenticator(context, curve.authorized_clients)
            holds_authenticator = True
            apply_server_keys(socket, curve)
        elif isinstance(curve, ClientKeys):
            apply_client_keys(socket, curve)
        if bind:
            socket.bind(endpoint)
            endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        else:
            socket.connect(endpoint)
    except zmq.ZMQError as exc:
        _abandon(socket, holds_authenticator)
        action = "bind" if bind else "connect"
        raise ConfigError(
            f"cannot {action} {endpoint}: {exc} (port in use or bad address?)"
        ) from None
    except BaseException:
        _abandon(socket, holds_authenticator)
        raise
    return SocketHandle(socket, endpoint, holds_authenticator=holds_authenticator)


def _abandon(socket: Socket, holds_authenticator: bool) -> None:
    context = socket.context
    socket.close(linger=0)
    if holds_authenticator:
        release_authenticator(context)


def receive_parts(socket: Socket, deadline: float | None) -> list[zmq.Frame] | None:
    """Receive one multipart message without copying, or None when ``deadline`` passes.

    ``deadline`` is a ``time.monotonic()`` value (s); None waits forever.
    """
    if deadline is None:
        return socket.recv_multipart(copy=False)
    timeout_ms = max(0, round((deadline - time.monotonic()) * 1000))
    if not socket.poll(timeout_ms, zmq.POLLIN):
        return None
    return socket.recv_multipart(zmq.NOBLOCK, copy=False)


def send_parts(socket: Socket, parts: list[WirePart], timeout_ms: int | None, copy: bool) -> bool:
    """Send a multipart message; False if no room within ``timeout_ms`` (None = wait forever)."""
    if timeout_ms is None:
        socket.send_multipart(parts, copy=copy)
        return True
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            socket.send_multipart(parts, zmq.NOBLOCK, copy=copy)
            return True
        except zmq.Again:
            remaining_ms = round((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not socket.poll(remaining_ms, zmq.POLLOUT):
                return False


def deadline_after(timeout_ms: int | None) -> float | None:
    """``time.monotonic()`` deadline ``timeout_ms`` from now (None = never)."""
    return None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
