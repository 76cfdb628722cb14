"""The preview, source → viewer: the latest frame only, for display.

Both sides set ``CONFLATE``, so each keeps just the newest message and a slow viewer never
queues frames or slows the source. ``CONFLATE`` does not support multipart messages (it
delivered the payload without its header when tried, research/pymmcore.md §6), so a preview
message is one part: ``[u32 little-endian header length][header][pixels]``. Packing copies the
frame once; the publisher limits itself to ``max_rate_hz`` so that costs little.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any, Final

import numpy.typing as npt
import zmq

from live_decode.errors import ProtocolError
from live_decode.messages import DEFAULT_LIMITS, CameraMeta, FrameMsg, Limits, decode, encode
from live_decode.transport.curve import ClientKeys, ServerKeys
from live_decode.transport.sockets import (
    DEFAULT_PREVIEW_ENDPOINT,
    Context,
    SocketEnd,
    deadline_after,
    open_socket,
    receive_parts,
)

log = logging.getLogger("live_decode.transport")

_LENGTH: Final = struct.Struct("<I")


def pack(msg: FrameMsg) -> bytes:
    """One-part wire form of a frame message (copies the pixels once)."""
    header, pixels = encode(msg)
    return b"".join((_LENGTH.pack(len(header)), header, pixels))


def unpack(buffer: memoryview, limits: Limits = DEFAULT_LIMITS) -> FrameMsg:
    """Parse :func:`pack`'s output without copying the pixels.

    Raises
    ------
    ProtocolError
        Truncated, malformed, or not a frame.
    """
    if buffer.nbytes < _LENGTH.size:
        raise ProtocolError(f"preview message of {buffer.nbytes} B is too short")
    (length,) = _LENGTH.unpack_from(buffer)
    if length > buffer.nbytes - _LENGTH.size:
        raise ProtocolError(f"preview header length {length} exceeds the message")
    end = _LENGTH.size + length
    msg = decode([buffer[_LENGTH.size : end], buffer[end:]], limits)
    if not isinstance(msg, FrameMsg):
        raise ProtocolError(f"a preview message must be a frame, got {msg.kind}")
    return msg


class PreviewPublisher(SocketEnd):
    """Offers frames for display (PUB + CONFLATE, binds by default). Not thread-safe.

    Parameters
    ----------
    max_rate_hz
        Frames per second actually sent; faster offers are skipped (None = send all).
    """

    def __init__(
        self,
        context: Context,
        endpoint: str = DEFAULT_PREVIEW_ENDPOINT,
        *,
        bind: bool = True,
        max_rate_hz: float | None = 30.0,
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        self._handle = open_socket(
            context, zmq.PUB, endpoint, bind=bind, curve=curve, options={zmq.CONFLATE: 1}
        )
        self.min_interval_s = 0.0 if max_rate_hz is None else 1.0 / max_rate_hz
        self.sent = 0
        self._seq = 0
        self._last_sent_s = -float("inf")

    def offer(
        self, pixels: npt.NDArray[Any], *, index: int, timestamp_ns: int, camera: CameraMeta
    ) -> bool:
        """Send the frame unless one was sent less than ``1 / max_rate_hz`` ago; True if sent.

        ``pixels`` is (H, W) in ADU; it is copied, so the caller may reuse it.
        """
        now = time.monotonic()
        if now - self._last_sent_s < self.min_interval_s:
            return False
        msg = FrameMsg(
            index=index, timestamp_ns=timestamp_ns, camera=camera, pixels=pixels, seq=self._seq
        )
        self._handle.socket.send(pack(msg), zmq.NOBLOCK)
        self._last_sent_s = now
        self._seq += 1
        self.sent += 1
        return True


class PreviewSubscriber(SocketEnd):
    """Receives the latest preview frame (SUB + CONFLATE, connects by default). Not thread-safe."""

    def __init__(
        self,
        context: Context,
        endpoint: str = DEFAULT_PREVIEW_ENDPOINT,
        *,
        bind: bool = False,
        limits: Limits = DEFAULT_LIMITS,
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        self._handle = open_socket(
            context, zmq.SUB, endpoint, bind=bind, curve=curve, options={zmq.CONFLATE: 1}
        )
        self._handle.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.limits = limits
        self.received = 0
        self.rejected = 0

    def latest(self, timeout_ms: int | None = 0) -> FrameMsg | None:
        """The newest frame, or None if none arrives within ``timeout_ms`` (None = wait)."""
        deadline = deadline_after(timeout_ms)
        while (parts := receive_parts(self.socket, deadline)) is not None:
            try:
                if len(parts) != 1:
                    raise ProtocolError(f"a preview message is one part, got {len(parts)}")
                msg = unpack(parts[0].buffer, self.limits)
            except ProtocolError as exc:
                self.rejected += 1
                log.warning("rejected preview message #%d: %s", self.rejected, exc)
                continue
            self.received += 1
            return msg
        return None
