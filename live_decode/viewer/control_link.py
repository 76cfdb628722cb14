"""Control requests from the viewer, sent from a background thread (no Qt).

A REQ round trip can take up to ``timeout_ms × (1 + retries)`` when the source is away, which must
never freeze the GUI. :class:`ControlLink` queues the GUI's commands and sends them, in order, from
its own thread with its own :class:`~live_decode.transport.control.ControlClient`; between
commands it asks for ``status`` every ``status_interval_s`` (the laser trace comes from there).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from typing import Final

import zmq

from live_decode.errors import ProtocolError, error_if_none
from live_decode.transport.control import (
    ControlClient,
    ControlCommand,
    ControlMode,
    SetLaser,
    SetMode,
    SetTarget,
    Status,
    StatusReply,
)
from live_decode.transport.curve import ClientKeys
from live_decode.transport.sockets import Context

log = logging.getLogger("live_decode.viewer.control")

FEEDBACK_MODES: Final[dict[bool, ControlMode]] = {True: "auto", False: "off"}
"""Controller mode names for feedback on/off (ControlConfig.mode)."""

StatusCallback = Callable[[StatusReply], None]


@dataclass(frozen=True)
class Reply:
    """A command and the source's answer (``ok`` plus fields, or ``error``)."""

    command: ControlCommand
    reply: Mapping[str, object]

    @property
    def ok(self) -> bool:
        return self.reply.get("ok") is True

    def describe(self) -> str:
        """One line for the GUI, e.g. ``set_laser 5: ok`` or the error."""
        args = " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in astuple(self.command))
        head = f"{self.command.name} {args}".strip()
        return f"{head}: ok" if self.ok else f"{head}: {self.reply.get('error', 'failed')}"


def laser_power_of(status: StatusReply) -> float | None:
    """The laser power (mW) in a status reply, if the source has a laser (and knows it)."""
    power = status.laser_mw
    return power if power is not None and power == power else None


class ControlLink:
    """Sends control commands and polls status on a background thread.

    Parameters
    ----------
    endpoint
        The source's control endpoint.
    on_status
        Called on the link's thread with every successful status reply.
    status_interval_s
        Status polling period; it backs off to ``5 × status_interval_s`` while the source does
        not answer.
    timeout_ms, retries
        Per request, as in :class:`~live_decode.transport.control.ControlClient`.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        curve: ClientKeys | None = None,
        context: Context | None = None,
        on_status: StatusCallback | None = None,
        status_interval_s: float = 0.5,
        timeout_ms: int = 500,
        retries: int = 1,
    ) -> None:
        self.endpoint = endpoint
        self._curve = curve
        self._own_context = context is None
        self._context = context  # made on start() when not given
        self._on_status = on_status
        self.status_interval_s = status_interval_s
        self._timeout_ms = timeout_ms
        self._retries = retries
        self._queue: queue.Queue[ControlCommand | None] = queue.Queue()
        self._lock = threading.Lock()
        self._last: Reply | None = None
        self._status: StatusReply | None = None
        self._sent = 0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ GUI side
    def set_laser(self, power_mw: float) -> None:
        self._queue.put(SetLaser(float(power_mw)))

    def set_target(self, density_per_um2: float) -> None:
        self._queue.put(SetTarget(float(density_per_um2)))

    def set_feedback(self, enabled: bool) -> None:
        self._queue.put(SetMode(FEEDBACK_MODES[enabled]))

    @property
    def last_reply(self) -> Reply | None:
        """The answer to the latest command (not status polls)."""
        with self._lock:
            return self._last

    @property
    def status(self) -> StatusReply | None:
        """The latest successful status reply (None before the first)."""
        with self._lock:
            return self._status

    @property
    def sent(self) -> int:
        """Commands answered (or given up on), status polls excluded."""
        with self._lock:
            return self._sent

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("this ControlLink was already started; make a new one")
        if self._context is None:
            self._context = zmq.Context()
        self._thread = threading.Thread(target=self._run, name="viewer-control", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Finish the request in flight, close the socket, end the thread; idempotent.

        Commands still queued are dropped. Returns False if the thread did not end in time.
        """
        self._queue.put(None)
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout_s)
            if thread.is_alive():
                log.error("control thread still running after %.1f s", timeout_s)
                return False
        if self._own_context and self._context is not None and not self._context.closed:
            self._context.term()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        client = ControlClient(
            error_if_none(self._context, "start() makes the context before the thread"),
            self.endpoint,
            timeout_ms=self._timeout_ms,
            retries=self._retries,
            curve=self._curve,
        )
        wait_s = 0.0  # first status right away
        try:
            while True:
                try:
                    item = self._queue.get(timeout=wait_s)
                except queue.Empty:
                    wait_s = self._poll_status(client)
                    continue
                if item is None:
                    return
                reply = Reply(item, client.request(item))
                if not reply.ok:
                    log.warning("control %s refused: %s", item.name, reply.reply.get("error"))
                with self._lock:
                    self._last = reply
                    self._sent += 1
                wait_s = 0.0  # show the command's effect at once
        finally:
            client.close()

    def _poll_status(self, client: ControlClient) -> float:
        raw = client.request(Status())
        if raw.get("ok") is not True:
            return 5 * self.status_interval_s
        try:
            status = StatusReply.from_json(raw)
        except ProtocolError as exc:
            log.warning("malformed status from %s: %s", self.endpoint, exc)
            return 5 * self.status_interval_s
        with self._lock:
            self._status = status
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:  # a bad callback must not end the link; logged with traceback
                log.exception("status callback failed")
        return self.status_interval_s
