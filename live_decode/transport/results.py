"""The results channel, worker → viewer/controller/anyone: PUB/SUB on three topics.

Each message is ``[topic, header, payload...]``; the topic part lets a subscriber take only what
it needs (the density controller takes ``stats``, a few hundred bytes, not ``locs``):

- ``locs``: :class:`~live_decode.messages.LocsMsg`, a batch of localizations + frame stats;
- ``stats``: :class:`~live_decode.messages.StatsMsg`, the same stats without the rows;
- ``image``: :class:`~live_decode.messages.ImageMsg`, the super-resolution image a network
  yields itself (Deep-STORM), summed so far, every ``image_every_s`` and at the end;
- ``event``: gap, eos, error, heartbeat.

PUB never blocks and drops for a subscriber whose queue is full. Sequence numbers are counted
per topic, so a subscriber counts what it missed (``missed``). The worker's localization file,
not this channel, is the lossless record (DESIGN.md §1).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Final

import zmq

from live_decode.errors import ProtocolError
from live_decode.messages import (
    DEFAULT_LIMITS,
    FrameMsg,
    FrameStats,
    ImageMsg,
    Limits,
    Localizations,
    LocsMsg,
    Message,
    StatsMsg,
    WorkerStats,
    decode,
    encode,
)
from live_decode.transport.curve import ClientKeys, ServerKeys
from live_decode.transport.sockets import (
    DEFAULT_RESULTS_ENDPOINT,
    Context,
    SocketEnd,
    deadline_after,
    open_socket,
    receive_parts,
)

log = logging.getLogger("live_decode.transport")

TOPICS: Final = ("locs", "stats", "image", "event")


def topic_for(msg: Message) -> str:
    """The results topic a message travels on.

    Raises
    ------
    ProtocolError
        For a frame: frames go on the frame stream or the preview, not the results channel.
    """
    if isinstance(msg, FrameMsg):
        raise ProtocolError("frames are not published on the results channel; use the preview")
    if isinstance(msg, LocsMsg | StatsMsg | ImageMsg):
        return msg.kind
    return "event"


class ResultPublisher(SocketEnd):
    """Publishes results (PUB, binds by default). Not thread-safe.

    Parameters
    ----------
    sndhwm
        Messages queued per subscriber before PUB drops for that subscriber.
    """

    def __init__(
        self,
        context: Context,
        endpoint: str = DEFAULT_RESULTS_ENDPOINT,
        *,
        bind: bool = True,
        sndhwm: int = 1000,
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        self._handle = open_socket(
            context, zmq.PUB, endpoint, bind=bind, curve=curve, options={zmq.SNDHWM: sndhwm}
        )
        self.published = 0
        self._seq = dict.fromkeys(TOPICS, 0)

    def publish(self, msg: Message) -> None:
        """Publish ``msg`` on its topic (:func:`topic_for`), stamped with that topic's seq."""
        topic = topic_for(msg)
        parts = encode(replace(msg, seq=self._seq[topic]))
        # PUB drops instead of blocking when a subscriber is full; NOBLOCK is belt and braces.
        self._handle.socket.send_multipart([topic.encode(), *parts], zmq.NOBLOCK, copy=False)
        self._seq[topic] += 1
        self.published += 1

    def publish_batch(
        self, locs: Localizations, frame_stats: Sequence[FrameStats], worker: WorkerStats
    ) -> None:
        """Publish a batch as ``locs`` (rows + stats) and as ``stats`` (stats only)."""
        stats = tuple(frame_stats)
        self.publish(LocsMsg(locs=locs, frame_stats=stats, worker=worker))
        self.publish(StatsMsg(frame_stats=stats, worker=worker))


class ResultSubscriber(SocketEnd):
    """Receives and validates results (SUB, connects by default). Not thread-safe.

    Counts ``received``, ``rejected`` (malformed, logged and skipped) and ``missed`` (seq jumps:
    messages the publisher dropped for us). A new subscriber misses whatever was published before
    its subscription reached the publisher (ZeroMQ's "slow joiner").
    """

    def __init__(
        self,
        context: Context,
        endpoint: str = DEFAULT_RESULTS_ENDPOINT,
        *,
        topics: Iterable[str] = TOPICS,
        bind: bool = False,
        rcvhwm: int = 1000,
        limits: Limits = DEFAULT_LIMITS,
        curve: ServerKeys | ClientKeys | None = None,
    ) -> None:
        self.topics = tuple(topics)
        unknown = set(self.topics) - set(TOPICS)
        if unknown:
            raise ValueError(f"unknown results topic(s) {sorted(unknown)}; choose from {TOPICS}")
        self._handle = open_socket(
            context, zmq.SUB, endpoint, bind=bind, curve=curve, options={zmq.RCVHWM: rcvhwm}
        )
        for topic in self.topics:
            self._handle.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.limits = limits
        self.received = 0
        self.rejected = 0
        self.missed = 0
        self.last_rejection: str | None = None
        self._last_seq: dict[str, int] = {}

    def recv(self, timeout_ms: int | None = 0) -> Message | None:
        """The next valid message, or None if none arrives within ``timeout_ms`` (None = wait)."""
        deadline = deadline_after(timeout_ms)
        while (parts := receive_parts(self.socket, deadline)) is not None:
            try:
                topic = parts[0].bytes.decode("utf-8", errors="replace")
                if topic not in self.topics:
                    raise ProtocolError(f"unexpected topic {topic!r}")
                msg = decode(parts[1:], self.limits)
                if topic_for(msg) != topic:
                    raise ProtocolError(f"a {msg.kind} message on topic {topic!r}")
            except ProtocolError as exc:
                self.rejected += 1
                self.last_rejection = str(exc)
                log.warning("rejected results message #%d: %s", self.rejected, exc)
                continue
            self._count_missed(topic, msg.seq)
            self.received += 1
            return msg
        return None

    def _count_missed(self, topic: str, seq: int) -> None:
        last = self._last_seq.get(topic)
        if last is not None and seq > last + 1:
            self.missed += seq - last - 1
        elif last is not None and seq <= last:
            log.info("results publisher restarted (topic %s seq %d after %d)", topic, seq, last)
        self._last_seq[topic] = seq
