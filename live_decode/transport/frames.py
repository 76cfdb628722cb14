"""The frame stream, source → worker: PUSH/PULL, drop-and-count for live cameras.

Back-pressure (DESIGN.md §2): a live source never waits. When the worker's queue is full
(``SNDHWM`` + ``RCVHWM`` messages plus kernel buffers) the frame is dropped and counted, and a
``gap`` message announcing the dropped frames precedes the next frame that goes out. Replay uses
``lossless=True``: ``send_frame`` waits for room instead.

Frames in flight are bounded by configuration only if the kernel's TCP buffers are too: left to
the OS they grow to megabytes, i.e. hundreds of small frames beyond the HWMs (measured: 363
frames of 64² in flight with HWMs of 16 + 16, and 1.3 s of stale backlog after a 2 s stall).
Given ``frame_bytes``, each side sets ``SNDBUF``/``RCVBUF`` to :data:`KERNEL_BUFFER_FRAMES`
frames (:func:`socket_buffer_bytes`), which bounds the stream to about ``sndhwm + rcvhwm +
4 × KERNEL_BUFFER_FRAMES`` frames (Linux doubles the value set, on each side); see
``benchmarks/bench_backpressure.py``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

import numpy.typing as npt
import zmq

from live_decode.errors import ProtocolError
from live_decode.messages import (
    DEFAULT_LIMITS,
    CameraMeta,
    EosMsg,
    ErrorMsg,
    FrameMsg,
    GapMsg,
    HeartbeatMsg,
    HelloMsg,
    Limits,
    Message,
    decode,
    encode,
)
from live_decode.transport.curve import ClientKeys, ServerKeys
from live_decode.transport.sockets import (
    DEFAULT_FRAMES_ENDPOINT,
    Context,
    SocketEnd,
    deadline_after,
    open_socket,
    receive_parts,
    send_parts,
)

log = logging.getLogger("live_decode.transport")

#: Kernel socket buffer per side, in frames, when the frame size is known.
KERNEL_BUFFER_FRAMES = 2
#: ... but never below this (Linux's own minimum is ~4.6 kB).
MIN_SOCKET_BUFFER_BYTES = 8 << 10


def socket_buffer_bytes(frame_bytes: int, frames: int = KERNEL_BUFFER_FRAMES) -> int:
    """``SNDBUF``/``RCVBUF`` (bytes) that hold ``frames`` frames of ``frame_bytes`` bytes."""
    return max(MIN_SOCKET_BUFFER_BYTES, int(frame_bytes) * frames)


def _buffer_option(option: int, frame_bytes: int | None) -> dict[int, int]:
    return {} if frame_bytes is None else {option: socket_buffer_bytes(frame_bytes)}


class FramePusher(SocketEnd):
    """Sends frames (PUSH). Not thread-safe: use it from one thread.

    Parameters
    ----------
    context
        The process's ZeroMQ context.
    endpoint
        Where to bind (default) or connect.
    bind
        The source normally binds; the worker connects.
    lossless
        False (live camera): never wait, drop when full. True (replay): wait for room.
    sndhwm
        Send queue length in messages (each a whole frame): bounds memory at the source.
    frame_bytes
        Size of one frame's pixels, if known (H × W × itemsize): the kernel's send buffer is
        then limited to :data:`KERNEL_BUFFER_FRAMES` frames, so frames in flight stay bounded.
        None: the OS default (autotuned, megabytes).
    curve
        CURVE keys of this side (required to bind a non-loopback address).
    linger_ms
        How long :meth:`close` waits to deliver queued messages.

    Notes
    -----
    Frames are sent without copying: do not modify a ``pixels`` array after passing it in.
    """

    def __init__(
        self,
        context: Context,
        endpoint: str = DEFAULT_FRAMES_ENDPOINT,
        *,
        bind: bool = True,
        lossless: bool = False,
        sndhwm: int = 16,
        frame_bytes: int | None = None,
        curve: ServerKeys | ClientKeys | None = None,
        linger_ms: int = 1000,
    ) -> None:
        options = {zmq.SNDHWM: sndhwm} | _buffer_option(zmq.SNDBUF, frame_bytes)
        self._handle = open_socket(
            context, zmq.PUSH, endpoint, bind=bind, curve=curve, options=options
        )
        self.lossless = lossless
        self.linger_ms = linger_ms
        self.frames_sent = 0
        self.frames_dropped = 0
        self.gaps_sent = 0
        self.frames_lost_upstream = 0
        self._seq = 0
        self._gap: GapMsg | None = None  # dropped frames not yet announced

    def send_frame(
        self,
        pixels: npt.NDArray[Any],
        *,
        index: int,
        timestamp_ns: int,
        camera: CameraMeta,
        timeout_ms: int | None = None,
    ) -> bool:
        """Queue one frame; returns False if it was dropped (counted, announced by a ``gap``).

        Parameters
        ----------
        pixels
            (H, W) frame in ADU, dtype one of ``messages.FRAME_DTYPES``.
        index
            0-based frame number in the acquisition.
        timestamp_ns
            Acquisition time (``time.time_ns()`` or the camera's clock).
        camera
            Calibration the worker needs for the photon conversion.
        timeout_ms
            Lossless mode only: longest wait for room (None = no limit), after which the frame
            is dropped like a live one. Ignored in live mode (never waits).
        """
        msg = FrameMsg(index=index, timestamp_ns=timestamp_ns, camera=camera, pixels=pixels)
        wait_ms = timeout_ms if self.lossless else 0
        if self._gap is not None and not self._send(self._gap, wait_ms):
            self._drop(index)
            return False
        if self._gap is not None:
            self._gap = None
            self.gaps_sent += 1
        if self._send(msg, wait_ms):
            self.frames_sent += 1
            return True
        self._drop(index)
        return False

    def send_eos(self, last_index: int | None, timeout_ms: int | None = 5000) -> bool:
        """Announce pending dropped frames, then the end of the stream; False if it timed out."""
        return self.flush_gap(timeout_ms) and self._send(EosMsg(last_index=last_index), timeout_ms)

    def send_error(self, code: str, message: str, timeout_ms: int | None = 1000) -> bool:
        """Tell the worker about a source failure; False if it could not be queued in time."""
        return self._send(ErrorMsg(code=code, message=message), timeout_ms)

    def send_hello(
        self, camera: CameraMeta, shape_px: tuple[int, int], live: bool, timeout_ms: int | None
    ) -> bool:
        """Describe the camera before the first frame (the worker checks its model against it);
        waits up to ``timeout_ms`` for a worker to connect. False if none did."""
        return self._send(HelloMsg(camera=camera, shape_px=shape_px, live=live), timeout_ms)

    def send_heartbeat(self) -> bool:
        """Non-blocking liveness signal for idle periods; False if the queue is full."""
        return self._send(HeartbeatMsg(timestamp_ns=time.time_ns()), 0)

    def flush_gap(self, timeout_ms: int | None = 1000) -> bool:
        """Send the pending ``gap`` message now, if any; False if it could not be queued."""
        if self._gap is None:
            return True
        if not self._send(self._gap, timeout_ms):
            return False
        self._gap = None
        self.gaps_sent += 1
        return True

    def report_gap(self, first: int, count: int) -> None:
        """Announce ``count`` frames lost before they reached us (e.g. a camera buffer overflow).

        The gap goes out before the next frame, merged with any drops of our own, and is counted
        in ``frames_lost_upstream``.
        """
        if count <= 0:
            return
        self.frames_lost_upstream += count
        if self._gap is None:
            self._gap = GapMsg(first=first, count=count)
        else:
            start = min(first, self._gap.first)
            self._gap = GapMsg(first=start, count=self._gap.count + count)

    def close(self, linger_ms: int | None = None) -> None:
        """Close the socket, waiting up to ``linger_ms`` (default: the one given at creation)
        for queued frames to go out. Idempotent."""
        self._handle.close(self.linger_ms if linger_ms is None else linger_ms)

    def _drop(self, index: int) -> None:
        if self.frames_dropped == 0:
            log.warning("the worker is not keeping up: dropping frames (counted, sent as gaps)")
        self.frames_dropped += 1
        if self._gap is None:
            self._gap = GapMsg(first=index, count=1)
        else:
            self._gap = GapMsg(first=self._gap.first, count=self._gap.count + 1)

    def _send(self, msg: Message, timeout_ms: int | None) -> bool:
        """Queue ``msg`` stamped with the next seq; wait up to ``timeout_ms`` (0 = never)."""
        parts = encode(replace(msg, seq=self._seq))
        # Zero-copy for the pixel buffer; small header-only messages are cheaper copied.
        if send_parts(self.socket, parts, timeout_ms, copy=not isinstance(msg, FrameMsg)):
            self._seq += 1
            return True
        return False


class FramePuller(SocketEnd):
    """Receives and validates frame-stream messages (PULL). Not thread-safe.

    A malformed message is logged, counted in ``rejected`` and skipped; :meth:`recv` never raises
    on bad input. Memory is bounded by ``rcvhwm`` messages (plus the sender's ``sndhwm``), and
    the kernel's receive buffer by :data:`KERNEL_BUFFER_FRAMES` frames if ``frame_bytes`` (the
    size of one frame's pixels) is given.
    """

    def __init__(
        self,
        context: Context,
        endpoint: str = DEFAULT_FRAMES_ENDPOINT,
        *,
        bind: bool = False,
        rcvhwm: int = 16,
        limits: Limits = DEFAULT_LIMITS,
        frame_bytes: int | None = None,
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        options = {zmq.RCVHWM: rcvhwm} | _buffer_option(zmq.RCVBUF, frame_bytes)
        self._handle = open_socket(
            context, zmq.PULL, endpoint, bind=bind, curve=curve, options=options
        )
        self.limits = limits
        self.received = 0
        self.rejected = 0
        self.last_rejection: str | None = None

    def recv(self, timeout_ms: int | None = 0) -> Message | None:
        """The next valid message, or None if none arrives within ``timeout_ms`` (None = wait).

        A decoded frame's pixels view the received buffer: no copy is made.
        """
        deadline = deadline_after(timeout_ms)
        while (parts := receive_parts(self.socket, deadline)) is not None:
            try:
                msg = decode(parts, self.limits)
            except ProtocolError as exc:
                self.rejected += 1
                self.last_rejection = str(exc)
                log.warning("rejected frame-stream message #%d: %s", self.rejected, exc)
                continue
            self.received += 1
            return msg
        return None
