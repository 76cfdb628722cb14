"""The control loop in the source process: worker stats → controller → laser, with a watchdog.

:class:`ControlLoop` is driven by the source's frame clock: ``SourceRunner(on_tick=loop.on_tick)``
calls :meth:`ControlLoop.on_tick` after every frame, and ``ControlServer(ctx, loop.handle, ...)``
routes the control socket's commands to :meth:`ControlLoop.handle`. Both run on the runner's
thread, so the loop needs no locks. Each tick:

1. drains the results subscriber without blocking (``stats`` and ``event`` topics);
2. safety: a worker ``error`` or ``eos``, or no stats for ``watchdog_s`` (injectable clock),
   sets the actuator to ``safe_power_mw`` while the loop has authority (modes auto/autotune);
3. ages the new densities: a frame ticked more than ``max_stats_age_s`` ago (a worker that lags
   or a backlog after a stall) is *stale* — counted, not acted on, so the integrator holds and
   the output stays at its last goal;
4. feeds the fresh densities to the :class:`DensityController` and applies its output;
5. writes a row of ``control.csv`` (with the data age, why the integrator held, and the
   cumulative safety trips and saturations).

Any exception inside a tick also sets the safe value and switches the mode to off; the tick never
raises, except when the actuator cannot even be set to its safe value (then the acquisition must
stop: :class:`ActuatorSafetyError`).

Safety semantics: after a watchdog trip or ``eos`` the mode stays auto and control resumes
when stats return, bumplessly: the output ramps (rate-limited) from the safe value back to the
power in use before the trip, with the integral of then, and densities of frames taken before
the ramp ended (they describe the safe state, not the plant) are not acted on. After a worker
``error`` or an exception the mode becomes off and the operator must switch auto on again. In
mode off the operator owns the laser: faults are reported but the laser is left as set.
:meth:`ControlLoop.counts` has every trip, saturation and stale episode for the run summary.

Events (mode, target, gains, saturation, autotune, manual, resumed, stale, fresh, and the safety
reasons watchdog / worker_error / worker_eos / exception) are logged on ``live_decode.control``,
kept in :attr:`ControlLoop.events`, written to the trace's ``event`` column, and — if a
:class:`~live_decode.transport.results.ResultPublisher` is given — published as
:class:`~live_decode.messages.EventMsg` with ``source = "control"`` and ``name = <kind>`` (the
``event`` topic). Events are never acted on as faults, so the loop never reacts to its own
reports.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from live_decode.config import ControlConfig
from live_decode.control.actuators import Actuator
from live_decode.control.controller import ControlStep, DensityController
from live_decode.control.trace import PLOT_NAME, TRACE_NAME, ControlTrace, plot_control
from live_decode.control.watchdog import Clock, Watchdog
from live_decode.errors import LiveDecodeError, ProtocolError
from live_decode.messages import (
    WORKER_EVENTS,
    WORKER_READY,
    EosMsg,
    ErrorMsg,
    EventMsg,
    GapMsg,
    Message,
    StatsMsg,
)
from live_decode.transport.control import (
    ControlCommand,
    ControlReply,
    LaserReply,
    ModeReply,
    SetLaser,
    SetMode,
    SetTarget,
    StatusReply,
    TargetReply,
)
from live_decode.transport.results import ResultPublisher, ResultSubscriber

log = logging.getLogger("live_decode.control")


# Before the first stats the worker may still be loading its model: hold the laser as set for
# this long before the watchdog calls it a fault.
STARTUP_GRACE_S = 20.0
#: Frames whose tick time is remembered to age their stats (older stats count as stale).
TICK_MEMORY = 8192


class ActuatorSafetyError(LiveDecodeError):
    """The actuator refused its safe value: the acquisition must stop (laser state unknown)."""


SAFETY_KINDS = frozenset({"watchdog", "worker_error", "worker_eos", "exception"})
EVENT_SOURCE = "control"
# Worker failures that do not make its stats untrustworthy (a stray bad message, frames lost).
# Its notices (EventMsg: worker_ready, model_mismatch_ignored ...) are never faults.
BENIGN_WORKER_CODES = frozenset(
    {
        "rejected_message",
        "frames_lost",
        "model_mismatch",  # the live residual alarm (quality): the density is still measured
    }
)


@dataclass(frozen=True)
class LoopEvent:
    """An event of the loop: ``frame`` is the source frame it happened at (None: before any),
    ``time_s`` the loop's clock then (s)."""

    frame: int | None
    kind: str
    message: str
    time_s: float

    @property
    def is_safety(self) -> bool:
        return self.kind in SAFETY_KINDS


def _json_number(x: float) -> float | None:
    return None if math.isnan(x) else x


class ControlLoop:
    """Closes the loop between the worker's frame stats and the activation actuator.

    Parameters
    ----------
    cfg
        The ``control`` section (gains, target, mode, watchdog, safe and min power...).
    actuator
        What is driven (:class:`~live_decode.control.actuators.Actuator`), e.g.
        :class:`~live_decode.sources.simulated.SimulatedLaserActuator`.
    subscriber
        Connected to the worker's results PUB with topics ``("stats", "event")``; polled
        without blocking each tick. None: feed messages with :meth:`ingest` instead.
    run_dir
        If given, the trace goes to ``run_dir / "control.csv"`` and :meth:`close` plots it to
        ``run_dir / "control.png"``.
    publisher
        If given, events are published on it (see the module docstring).
    clock
        Monotonic seconds for the watchdog (inject a fake one in tests).
    max_messages_per_tick
        Cap on messages drained per tick, so a flood cannot stall the camera loop.

    Raises
    ------
    ValueError
        If ``safe_power_mw`` or ``min_power_mw`` is outside the actuator's limits, or the
        actuator's present value is.
    """

    def __init__(
        self,
        cfg: ControlConfig,
        actuator: Actuator,
        subscriber: ResultSubscriber | None = None,
        *,
        run_dir: Path | None = None,
        publisher: ResultPublisher | None = None,
        clock: Clock = time.monotonic,
        max_messages_per_tick: int = 1000,
    ) -> None:
        lo, hi = actuator.limits
        if not lo <= cfg.safe_power_mw <= hi:
            raise ValueError(
                f"control.safe_power_mw = {cfg.safe_power_mw:g} is outside the limits of "
                f"{actuator.name} [{lo:g}, {hi:g}]: choose a safe value within them"
            )
        self.cfg = cfg
        self.actuator = actuator
        self.subscriber = subscriber
        self.publisher = publisher
        self.max_messages_per_tick = max_messages_per_tick
        self._commanded = actuator.get()
        self.controller = DensityController(cfg, (lo, hi), self._commanded)
        self._clock = clock
        self.watchdog = Watchdog(cfg.watchdog_s, clock)
        self.trace = ControlTrace(run_dir / TRACE_NAME) if run_dir is not None else None
        self.plot_path = run_dir / PLOT_NAME if run_dir is not None else None
        self.events: deque[LoopEvent] = deque(maxlen=1000)
        self.last_step: ControlStep | None = None
        self.frame: int | None = None
        # Counters (also in status()).
        self.stats_received = 0
        self.frames_measured = 0
        self.frames_missing = 0
        self.safety_events = 0
        self.errors = 0
        self.publish_errors = 0
        self.stale_measurements = 0  # densities not acted on: their frame was too old
        self.stale_episodes = 0
        self.settling_measurements = 0  # densities of frames before a resume ramp ended
        self.data_age_s = math.nan  # age of the newest density at the last tick that had any
        self._inbox: list[tuple[int, float]] = []  # (frame, density) since the last tick
        self._tick_frame = np.full(TICK_MEMORY, -1, dtype=np.int64)
        self._tick_s = np.zeros(TICK_MEMORY, dtype=np.float64)
        self._stale = False
        self._held = ""  # why the integrator held at this tick: "", "stale", "settling"
        self._tick_age_s = math.nan  # age of the oldest density that arrived at this tick
        self._resume: tuple[float, float] | None = None  # (output, integral) before a trip
        self._settling = False
        self._ignore_before = -1  # densities of frames before this one are not acted on
        self._stats_msgs = 0
        self._fault: tuple[str, str] | None = None
        self._ever_stats = False
        self._tick_events: list[str] = []
        self._sync_watchdog()
        log.info(
            "control loop on %s: mode %s, target %g /µm², kp %g, ki %g, safe %g, watchdog %g s",
            actuator.name,
            self.controller.mode,
            self.controller.target,
            self.controller.kp,
            self.controller.ki,
            cfg.safe_power_mw,
            cfg.watchdog_s,
        )

    # ------------------------------------------------------------------ input
    def ingest(self, msg: Message) -> None:
        """Take one results message (what :meth:`on_tick` does with each it receives)."""
        if isinstance(msg, StatsMsg):
            self._stats_msgs += 1
            self.stats_received += 1
            for s in msg.frame_stats:
                if math.isfinite(s.density_per_um2):
                    self._inbox.append((s.frame, s.density_per_um2))
                    self.frames_measured += 1
        elif isinstance(msg, ErrorMsg):
            if msg.code in BENIGN_WORKER_CODES:
                # Reported and counted by the worker; the density stats stay valid.
                self._emit(self.frame, "worker_report", f"{msg.code}: {msg.message}")
            else:
                self._fault = ("worker_error", f"worker error {msg.code}: {msg.message}")
        elif isinstance(msg, EventMsg):
            if msg.source == WORKER_EVENTS and msg.name != WORKER_READY:
                self._emit(self.frame, "worker_report", f"{msg.name}: {msg.message}")
        elif isinstance(msg, EosMsg):
            if self._fault is None:
                self._fault = ("worker_eos", f"the worker ended its stream at {msg.last_index}")
        elif isinstance(msg, GapMsg):
            self.frames_missing += msg.count

    def _poll(self) -> None:
        if self.subscriber is None:
            return
        for _ in range(self.max_messages_per_tick):
            msg = self.subscriber.recv(timeout_ms=0)
            if msg is None:
                return
            self.ingest(msg)

    # ------------------------------------------------------------------ the tick
    def on_tick(self, frame_index: int) -> None:
        """Run one control step after frame ``frame_index`` (plug into ``SourceRunner``)."""
        self.frame = frame_index
        slot = frame_index % TICK_MEMORY
        self._tick_frame[slot], self._tick_s[slot] = frame_index, self._clock()
        self._held, self._tick_age_s = "", math.nan
        try:
            self._poll()
            self._tick(frame_index)
        except ActuatorSafetyError:
            raise
        except Exception as exc:  # any failure: the laser must not stay where it was
            self._on_exception(frame_index, exc)
        finally:
            self._write_row(frame_index)

    def _age_s(self, frame: int) -> float:
        """Seconds since the tick of ``frame`` (inf if not remembered: older, or never ticked)."""
        slot = frame % TICK_MEMORY
        if frame < 0 or self._tick_frame[slot] != frame:
            return math.inf
        return float(self._clock() - self._tick_s[slot])

    def _usable(self, frame: int, arrived: list[tuple[int, float]]) -> list[float]:
        """The densities to act on; stale ones and those of a resume ramp are counted instead."""
        if not arrived:
            return []
        used: list[float] = []
        limit = self.cfg.max_stats_age_s
        ages = [self._age_s(f) for f, _ in arrived]
        self.data_age_s, self._tick_age_s = min(ages), max(ages)
        for (f, d), age in zip(arrived, ages, strict=True):
            if age > limit:
                self.stale_measurements += 1
                self._held = "stale"
            elif f < self._ignore_before:
                self.settling_measurements += 1
                self._held = self._held or "settling"
            else:
                used.append(d)
        if not used and self._held == "stale" and not self._stale:
            self._stale = True
            self.stale_episodes += 1
            self._emit(
                frame,
                "stale",
                f"stats are {self.data_age_s:.2f} s old (> {limit:g} s): holding the "
                f"integrator and the laser at {self._commanded:g} mW",
            )
        elif used and self._stale:
            self._stale = False
            self._emit(frame, "fresh", f"stats fresh again ({self.data_age_s:.2f} s old)")
        return used

    def _tick(self, frame: int) -> None:
        arrived, self._inbox = self._inbox, []
        got_stats, self._stats_msgs = self._stats_msgs > 0, 0
        if got_stats:
            silence = self.watchdog.silence_s
            if self.watchdog.feed():
                self._emit(frame, "resumed", f"stats back after {silence:.2f} s: control resumes")
                self._start_resume(frame)
            self._ever_stats = True
        densities = self._usable(frame, arrived)
        fault, self._fault = self._fault, None
        authority = self.controller.mode != "off"
        if fault is not None:
            kind, message = fault
            if authority:
                self._go_safe(frame, kind, message, mode_off=kind == "worker_error")
                self.watchdog.trip()  # the silence that follows is the same fault
            else:
                self._emit(frame, kind, f"{message} (mode off: laser left as set)")
        elif self.watchdog.check() and (
            self._ever_stats or self.watchdog.silence_s > STARTUP_GRACE_S
        ):
            since = "" if self._ever_stats else " since auto started (is the worker running?)"
            self._go_safe(
                frame,
                "watchdog",
                f"no stats for {self.watchdog.silence_s:.2f} s > {self.watchdog.timeout_s:g} s"
                + since,
                mode_off=False,
            )
        step = self.controller.update(frame, densities)
        self.last_step = step
        for event in step.events:
            self._emit(frame, event.kind, event.message)
        self._apply(step.output)
        if self._settling:
            # Frames taken before the laser was back describe the safe state: not acted on.
            self._ignore_before = frame + 1
            if self.controller.output == self.controller.goal or self.controller.mode != "auto":
                self._settling = False
                self._resume = None
        self._sync_watchdog()

    def _start_resume(self, frame: int) -> None:
        """Stats are back after a trip: ramp to the power of before with its integral."""
        if self._resume is None or self.controller.mode != "auto":
            self._resume = None
            return
        self.controller.resume(*self._resume)
        self._settling = True
        self._ignore_before = frame + 1

    def _apply(self, value: float) -> None:
        if value != self._commanded:
            self._commanded = self.actuator.set(value)
            # A device may round (Micro-Manager keeps 4 decimals): continue from what it applied,
            # or the next tick would see a difference and set it again.
            self.controller.output = self._commanded

    def _on_exception(self, frame: int, exc: Exception) -> None:
        self.errors += 1
        log.error("control step at frame %d failed", frame, exc_info=exc)
        self._go_safe(frame, "exception", f"controller error {exc!r}", mode_off=True)

    def _go_safe(self, frame: int, kind: str, reason: str, *, mode_off: bool) -> None:
        safe = self.cfg.safe_power_mw
        c = self.controller
        if mode_off or c.mode != "auto":
            self._resume = None
        elif self._resume is None:  # the first trip of a series: remember the good state
            self._resume = (c.goal if self._settling else c.output, c.integral)
        self._settling = False
        try:
            self._commanded = self.actuator.set(safe)
        except Exception as exc:
            log.critical("cannot set %s to its safe value %g: %r", self.actuator.name, safe, exc)
            raise ActuatorSafetyError(
                f"could not set {self.actuator.name} to its safe value {safe:g} after {reason}: "
                f"{exc!r}. Stopping the acquisition; switch the laser off by hand"
            ) from exc
        self.controller.hold(self._commanded)
        self.safety_events += 1
        then = "; mode -> off (switch auto on again when fixed)" if mode_off else ""
        self._emit(frame, kind, f"safe: {reason}: laser -> {self._commanded:g} mW{then}")
        if mode_off and self.controller.mode != "off":
            self.controller.set_mode("off")
            self._flush_controller_events()
        self._sync_watchdog()

    def _sync_watchdog(self) -> None:
        if self.controller.mode == "off":
            self.watchdog.disarm()
        else:
            self.watchdog.arm()

    # ------------------------------------------------------------------ events and trace
    def _emit(self, frame: int | None, kind: str, message: str) -> None:
        event = LoopEvent(frame, kind, message, self._clock())
        self.events.append(event)
        self._tick_events.append(f"{kind}: {message}")
        level = logging.WARNING if event.is_safety else logging.INFO
        log.log(level, "frame %s: %s: %s", frame, kind, message)
        if self.publisher is not None:
            event_msg = EventMsg(source=EVENT_SOURCE, name=kind, message=message, frame=frame)
            try:
                self.publisher.publish(event_msg)
            except (zmq.ZMQError, ProtocolError) as exc:
                self.publish_errors += 1
                log.warning("could not publish control event #%d: %s", self.publish_errors, exc)

    def _write_row(self, frame: int) -> None:
        events, self._tick_events = tuple(self._tick_events), []
        if self.trace is None:
            return
        c = self.controller
        step = self.last_step
        fresh = step is not None and step.frame == frame
        self.trace.write(
            frame,
            step.density_per_um2 if step is not None and fresh else math.nan,
            c.smoother.value,
            c.target,
            self._commanded,
            c.mode,
            events,
            data_age_s=self._tick_age_s,
            held=self._held,
            safety_trips=self.safety_events,
            saturations=c.saturations,
        )

    # ------------------------------------------------------------------ control socket
    def handle(self, cmd: ControlCommand) -> ControlReply:
        """Carry out a control-socket command (a :data:`~live_decode.transport.control.Handler`).

        ``SetTarget``, ``SetMode`` (off | auto | autotune), ``SetLaser`` (mode off only),
        ``Status``.

        Raises
        ------
        ValueError
            A refused command (set_laser in auto, a value outside the limits...); the control
            server returns its message to the client.
        """
        match cmd:
            case SetTarget(density_per_um2=target):
                self.controller.set_target(target)
                self._flush_controller_events()
                return TargetReply(self.controller.target)
            case SetMode(mode=mode):
                self.controller.set_mode(mode)
                self._flush_controller_events()
                self._sync_watchdog()
                return ModeReply(self.controller.mode)
            case SetLaser(power_mw=power_mw):
                value = self.controller.set_manual(power_mw)
                self._commanded = self.actuator.set(value)
                self.controller.output = self._commanded
                self._emit(self.frame, "manual", f"laser set by hand to {self._commanded:g} mW")
                return LaserReply(self._commanded)
            case _:
                return self.status_reply()

    def status_reply(self) -> StatusReply:
        """:meth:`status` as the typed control reply."""
        return StatusReply.from_json(self.status())

    def _flush_controller_events(self) -> None:
        # Commands act between ticks; log their events now rather than at the next tick.
        for event in self.controller.drain_events():
            self._emit(self.frame, event.kind, event.message)

    def status(self) -> dict[str, object]:
        """JSON-ready state: mode, target, laser, gains, densities, watchdog, counters."""
        c = self.controller
        last = self.events[-1] if self.events else None
        model = c.model
        return {
            "mode": c.mode,
            "target_density_per_um2": c.target,
            "laser_mw": self._commanded,
            "actuator": self.actuator.name,
            "limits": list(self.actuator.limits),
            "kp": c.kp,
            "ki": c.ki,
            "smoothed_density_per_um2": _json_number(c.smoother.value),
            "saturation": c.saturation or None,
            "watchdog_tripped": self.watchdog.tripped,
            "stats_silence_s": self.watchdog.silence_s,
            "frame": self.frame,
            "stats_received": self.stats_received,
            "frames_measured": self.frames_measured,
            "safety_events": self.safety_events,
            "errors": self.errors,
            "data_age_s": _json_number(self.data_age_s),
            "stale": self._stale,
            **self.counts(),
            "last_event": None if last is None else f"{last.kind}: {last.message}",
            "autotune": None
            if model is None
            else {
                "gain_per_mw": model.gain_per_mw,
                "time_constant_frames": model.time_constant_frames,
                "dead_time_frames": model.dead_time_frames,
            },
        }

    def counts(self) -> dict[str, int]:
        """Every trip, saturation and stale episode of the run (for the run summary)."""
        return {
            "safety_trips": self.safety_events,
            "watchdog_trips": self.watchdog.trips,
            "saturations": self.controller.saturations,
            "stale_episodes": self.stale_episodes,
            "stale_measurements": self.stale_measurements,
            "settling_measurements": self.settling_measurements,
            "frames_measured": self.frames_measured,
            "errors": self.errors,
        }

    # ------------------------------------------------------------------ shutdown
    def close(self, plot: bool = True) -> None:
        """Close the trace and (``plot``) draw ``control.png`` beside it. Idempotent.

        The actuator is left as it is: the source decides what the laser does after a run.
        """
        if self.trace is None:
            return
        self.trace.close()
        if plot and self.plot_path is not None and self.trace.rows:
            try:
                plot_control(self.trace.path, self.plot_path)
            except (OSError, ValueError) as exc:
                log.warning("could not plot the control trace: %s", exc)
        self.trace = None
