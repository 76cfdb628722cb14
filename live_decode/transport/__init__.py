"""ZeroMQ transport: the frame stream, results, preview and control channels (DESIGN.md §1-2).

The wire format itself (message types, :func:`~live_decode.messages.encode`,
:func:`~live_decode.messages.decode`) lives in :mod:`live_decode.messages`.
"""

from __future__ import annotations

from live_decode.transport.control import (
    ControlClient,
    ControlCommand,
    ControlServer,
    SetLaser,
    SetMode,
    SetTarget,
    Status,
    StatusReply,
    parse_command,
)
from live_decode.transport.curve import (
    ClientKeys,
    KeyPair,
    ServerKeys,
    client_keys,
    generate_key_set,
    generate_keypair,
    load_keypair,
    load_public_key,
    server_keys,
)
from live_decode.transport.frames import FramePuller, FramePusher
from live_decode.transport.preview import PreviewPublisher, PreviewSubscriber
from live_decode.transport.results import TOPICS, ResultPublisher, ResultSubscriber, topic_for
from live_decode.transport.sockets import (
    DEFAULT_CONTROL_ENDPOINT,
    DEFAULT_FRAMES_ENDPOINT,
    DEFAULT_PREVIEW_ENDPOINT,
    DEFAULT_RESULTS_ENDPOINT,
    Endpoint,
    SocketHandle,
    open_socket,
    parse_endpoint,
)

__all__ = [
    "DEFAULT_CONTROL_ENDPOINT",
    "DEFAULT_FRAMES_ENDPOINT",
    "DEFAULT_PREVIEW_ENDPOINT",
    "DEFAULT_RESULTS_ENDPOINT",
    "TOPICS",
    "ClientKeys",
    "ControlClient",
    "ControlCommand",
    "ControlServer",
    "Endpoint",
    "FramePuller",
    "FramePusher",
    "KeyPair",
    "PreviewPublisher",
    "PreviewSubscriber",
    "ResultPublisher",
    "ResultSubscriber",
    "ServerKeys",
    "SetLaser",
    "SetMode",
    "SetTarget",
    "SocketHandle",
    "Status",
    "StatusReply",
    "client_keys",
    "generate_key_set",
    "generate_keypair",
    "load_keypair",
    "load_public_key",
    "open_socket",
    "parse_command",
    "parse_endpoint",
    "server_keys",
    "topic_for",
]
