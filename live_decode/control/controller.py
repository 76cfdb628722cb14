"""The density controller: smoothed density → actuator value, by a PI law with anti-windup.

Pure logic, no sockets, no clock: :meth:`DensityController.update` is called once per camera frame
with the densities measured since the last call and returns the actuator value to apply. Time is
counted in frames; the integral advances by one step per *measured* frame, so a stall in the stats
never winds it up, and a batch of ten frames' stats advances it ten steps.

The law, per update with ``n`` new measurements and error ``e = target − smoothed``::

    I' = I + ki · e · n                   (candidate integral, mW)
    g  = clip(kp · e + I', lo, hi)        (goal; lo = max(actuator low, min_power_mw))
    u  = u_prev moved towards g by at most r · Δf   (rate limit r mW/frame, Δf frames)
    I  = I'  unless a limit or the rate held u back in the direction e pushes
                                          (conditional integration: the anti-windup)

Between measurements the output keeps slewing towards the last goal at the rate limit, so a
batch of stats never makes the laser jump.

Switching to auto is bumpless: the integral is set so that the first output equals the power in
use. Modes: ``off`` (manual: the output is whatever :meth:`set_manual` set), ``auto`` (hold the
target), ``autotune`` (a step test, :mod:`live_decode.control.autotune`, then back to the mode it
was started from with the new gains).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from live_decode.config import ControlConfig
from live_decode.control.autotune import FopdtModel, StepTest, simc_gains
from live_decode.control.smoothing import DensitySmoother

Mode = Literal["off", "auto", "autotune"]
MODES: tuple[Mode, ...] = ("off", "auto", "autotune")
Saturation = Literal["", "low", "high"]
EventKind = Literal["mode", "target", "gains", "saturation", "autotune"]

#: Leaving saturation needs the wanted output this fraction of the range inside the limit, so a
#: noisy output hovering at a limit does not log an event every frame.
SATURATION_HYSTERESIS = 0.01


@dataclass(frozen=True)
class ControlEvent:
    """Something the operator should see: ``kind`` for filtering, ``message`` for humans."""

    kind: EventKind
    message: str


@dataclass(frozen=True)
class ControlStep:
    """What one :meth:`DensityController.update` did.

    Attributes
    ----------
    frame : int
        Camera frame index of the update (the source's clock).
    density_per_um2 : float
        Mean of the densities received in this update, emitters µm⁻²; NaN if none.
    smoothed_per_um2 : float
        Smoothed density the law acted on (NaN before the first measurement).
    target_per_um2 : float
        Target density, emitters µm⁻².
    output : float
        Actuator value to apply (mW), always within the output limits.
    mode : str
        ``off``, ``auto`` or ``autotune``.
    events : tuple of ControlEvent
        Events since the previous update (mode/target changes, saturation, autotune result).
    """

    frame: int
    density_per_um2: float
    smoothed_per_um2: float
    target_per_um2: float
    output: float
    mode: Mode
    events: tuple[ControlEvent, ...] = ()


class DensityController:
    """PI control of the per-frame emitter density with output limits and a rate limit.

    Parameters
    ----------
    cfg
        Gains (kp mW per emitter µm⁻²; ki the same per frame), target, smoothing, rate limit
        (mW/frame), min_power_mw, mode and autotune settings.
    limits
        (lowest, highest) actuator value (mW); auto mode never leaves [max(lo, min_power), hi].
    output
        Actuator value in use at start (mW).

    Raises
    ------
    ValueError
        If min_power_mw is above the actuator's upper limit, or ``output`` is outside ``limits``.
    """

    def __init__(self, cfg: ControlConfig, limits: tuple[float, float], output: float) -> None:
        lo, hi = float(limits[0]), float(limits[1])
        if not lo <= hi:
            raise ValueError(f"actuator limits must be (low, high), got {limits}")
        if cfg.min_power_mw > hi:
            raise ValueError(
                f"control.min_power_mw = {cfg.min_power_mw:g} is above the actuator's upper limit "
                f"{hi:g}: lower it"
            )
        if not lo <= output <= hi:
            raise ValueError(f"start value {output:g} is outside the actuator limits {limits}")
        self.cfg = cfg
        self.limits = (lo, hi)
        self.output_limits = (max(lo, cfg.min_power_mw), hi)
        self.kp = cfg.kp
        self.ki = cfg.ki
        self.target = cfg.target_density_per_um2
        self.max_rate = cfg.max_rate_mw_per_frame
        self.smoother = DensitySmoother(cfg.smoothing, cfg.smoothing_frames)
        self.output = float(output)
        self.integral = float(output)
        self._goal = float(output)
        self.saturation: Saturation = ""
        self.saturations = 0  # times the output entered a limit
        self.model: FopdtModel | None = None
        self._mode: Mode = "off"
        self._bumpless = True
        self._last_frame: int | None = None
        self._step_test: StepTest | None = None
        self._return_mode: Mode = "off"
        self._pending: list[ControlEvent] = []
        self.set_mode(cfg.mode)
        self._pending.clear()

    # ------------------------------------------------------------------ commands
    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch to ``off``, ``auto`` or ``autotune`` (= :meth:`start_autotune`)."""
        if mode not in MODES:
            raise ValueError(f"unknown control mode {mode!r}; use one of {list(MODES)}")
        if mode == "autotune":
            self.start_autotune()
            return
        if mode != self._mode:
            self._note("mode", f"mode {self._mode} -> {mode}")
        if self._mode == "autotune":
            self._step_test = None
        self._mode = "auto" if mode == "auto" else "off"
        self._bumpless = True

    def set_target(self, density_per_um2: float) -> None:
        """New target density, emitters µm⁻² frame⁻¹ (finite, >= 0)."""
        d = float(density_per_um2)
        if not (math.isfinite(d) and d >= 0):
            raise ValueError(f"target density must be a finite number >= 0, got {density_per_um2}")
        if d != self.target:
            self._note("target", f"target {self.target:g} -> {d:g} /µm²")
        self.target = d

    def set_manual(self, value: float) -> float:
        """Set the output by hand (mode off only); returns the value to apply.

        Raises
        ------
        ValueError
            In auto/autotune mode (switch to off first) or outside the actuator limits.
        """
        if self._mode != "off":
            raise ValueError(
                f"the laser is under automatic control (mode {self._mode}); "
                "set_mode off before setting the power by hand"
            )
        v = float(value)
        lo, hi = self.limits
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ValueError(f"{value!r} is outside the actuator limits [{lo:g}, {hi:g}]")
        self.output = self._goal = v
        return v

    def set_gains(self, kp: float, ki: float) -> None:
        """Replace the gains (kp mW per emitter µm⁻², ki per frame); keeps the output bumpless."""
        if not (math.isfinite(kp) and math.isfinite(ki) and kp >= 0 and ki >= 0):
            raise ValueError(f"gains must be finite and >= 0, got kp={kp}, ki={ki}")
        self.kp, self.ki = float(kp), float(ki)
        self._bumpless = True
        self._note("gains", f"gains kp={self.kp:.3g}, ki={self.ki:.3g}")

    def start_autotune(self) -> None:
        """Start a step test from the present output; the result arrives as an event."""
        if self._mode == "autotune":
            raise ValueError("an autotune step test is already running; wait for its result")
        cfg = self.cfg
        self._step_test = StepTest(
            self.output,
            cfg.autotune_step_mw,
            cfg.autotune_baseline_frames,
            cfg.autotune_response_frames,
            self.output_limits if self.output >= self.output_limits[0] else self.limits,
        )
        self._return_mode = self._mode
        self._note(
            "mode",
            f"mode {self._mode} -> autotune (step {self._step_test.u0:g} -> "
            f"{self._step_test.u1:g} mW)",
        )
        self._mode = "autotune"

    def hold(self, value: float) -> None:
        """Force the output to ``value`` (a safety action) and restart smoothing from scratch.

        The next auto update starts bumpless from ``value``; a running step test is abandoned.
        """
        self.output = self._goal = float(value)
        self.integral = float(value)
        self.smoother.reset()
        self._bumpless = True
        if self._mode == "autotune":
            self._step_test = None
            self._mode = self._return_mode
            self._note("autotune", "autotune abandoned")

    def resume(self, goal: float, integral: float) -> None:
        """After a safety hold: slew back to ``goal`` (mW, the power in use before it) and go on
        with the integral of then, so control continues where it left off instead of winding up
        again from the safe value. The smoother restarts: what it held described the old state.
        """
        lo, hi = self.output_limits
        self._goal = min(max(float(goal), lo), hi)
        self.integral = float(integral)
        self._bumpless = False
        self.smoother.reset()

    @property
    def goal(self) -> float:
        """The value the output is slewing towards (mW)."""
        return self._goal

    def drain_events(self) -> tuple[ControlEvent, ...]:
        """Events noted since the last :meth:`update` (which would otherwise return them)."""
        events, self._pending = tuple(self._pending), []
        return events

    # ------------------------------------------------------------------ the law
    def update(self, frame: int, densities: Iterable[float] = ()) -> ControlStep:
        """Take the densities measured since the last call and compute the next output.

        Parameters
        ----------
        frame
            The source's present frame index (its clock for the rate limit).
        densities
            Densities (emitters µm⁻² frame⁻¹) of the frames measured since the last call, oldest
            first; non-finite values (gaps, frames without a measurement) are ignored.
        """
        fresh = [float(d) for d in densities if math.isfinite(d)]
        for d in fresh:
            self.smoother.push(d)
        # The rate limit counts source frames since the previous call (normally 1).
        elapsed = 1 if self._last_frame is None else max(frame - self._last_frame, 1)
        self._last_frame = frame
        max_step = self.max_rate * elapsed
        smoothed = self.smoother.value
        if self._mode == "auto":
            if fresh and math.isfinite(smoothed):
                self._pi(smoothed, len(fresh), max_step)
            else:  # no news: keep slewing towards the last goal
                self.output = self._slew(self._goal, max_step)
        elif self._mode == "autotune":
            self._autotune(smoothed if fresh else None, max_step)
        mean = sum(fresh) / len(fresh) if fresh else math.nan
        return ControlStep(
            frame, mean, smoothed, self.target, self.output, self._mode, self.drain_events()
        )

    def _slew(self, goal: float, max_step: float) -> float:
        return min(max(goal, self.output - max_step), self.output + max_step)

    def _pi(self, smoothed: float, n_new: int, max_step: float) -> None:
        e = self.target - smoothed
        if self._bumpless:
            # Start from the power in use: no jump when auto is switched on or gains change.
            self.integral = self.output - self.kp * e
            self._bumpless = False
        candidate = self.integral + self.ki * e * n_new
        wanted = self.kp * e + candidate
        lo, hi = self.output_limits
        limited = min(max(wanted, lo), hi)
        applied = self._slew(limited, max_step)
        # Conditional integration: no integral step while a limit (output or rate) holds the
        # output back in the direction the error pushes.
        pushes_on = (wanted > applied and e > 0) or (wanted < applied and e < 0)
        if not pushes_on:
            self.integral = candidate
        self._track_saturation(wanted, lo, hi)
        self._goal = limited
        self.output = applied

    def _track_saturation(self, wanted: float, lo: float, hi: float) -> None:
        margin = SATURATION_HYSTERESIS * (hi - lo)
        state: Saturation = "high" if wanted > hi else "low" if wanted < lo else ""
        if not state and self.saturation == "high" and wanted > hi - margin:
            state = "high"
        if not state and self.saturation == "low" and wanted < lo + margin:
            state = "low"
        if state != self.saturation:
            if state:
                self.saturations += 1
                bound = hi if state == "high" else lo
                self._note(
                    "saturation", f"saturated {state}: wants {wanted:.3g}, limited to {bound:g} mW"
                )
            else:
                self._note("saturation", f"left saturation ({self.saturation})")
            self.saturation = state

    def _autotune(self, smoothed: float | None, max_step: float) -> None:
        test = self._step_test
        if test is None:  # pragma: no cover - autotune mode always has a test
            self._mode = self._return_mode
            return
        self._goal = test.command()
        self.output = self._slew(self._goal, max_step)
        test.record(self.output, smoothed)
        if test.phase != "done":
            return
        self._step_test = None
        self._mode = self._return_mode
        if self._mode == "off":
            self.output = test.u0  # back to the manual power the user had set
        self._goal = self.output
        self._bumpless = True
        try:
            model = test.identify()
            kp, ki = simc_gains(model, self.cfg.autotune_tau_c_dead_times * model.dead_time_frames)
        except ValueError as exc:
            self._note("autotune", f"autotune failed, gains unchanged: {exc}")
        else:
            self.model = model
            self.kp, self.ki = kp, ki
            self._note(
                "autotune",
                f"autotune: K={model.gain_per_mw:.3g} /µm² per mW, "
                f"T={model.time_constant_frames:.3g} frames, "
                f"dead time={model.dead_time_frames:g} frames -> kp={kp:.3g}, ki={ki:.3g}",
            )
        self._note("mode", f"mode autotune -> {self._mode}")

    def _note(self, kind: EventKind, message: str) -> None:
        # Logged (with the frame) by whoever applies the step: ControlLoop does.
        self._pending.append(ControlEvent(kind, message))
