"""Closed-loop 405 nm activation control: hold the emitter density the user asks for, safely.

- :class:`Actuator` — the contract of what is driven (the simulated laser and the Micro-Manager
  one live with their sources: ``live_decode.sources.simulated``, ``live_decode.sources.mm_laser``).
- :class:`DensityController` — smoothing + PI with anti-windup, limits, rate limit, autotune.
- :class:`ControlLoop` — the controller in the source process: stats in, laser out, watchdog,
  control-socket handler, ``control.csv`` trace; :func:`plot_control` draws the trace.
"""

from __future__ import annotations

from live_decode.control.actuators import Actuator
from live_decode.control.autotune import FopdtModel, fit_fopdt, simc_gains
from live_decode.control.controller import ControlEvent, ControlStep, DensityController
from live_decode.control.loop import ActuatorSafetyError, ControlLoop, LoopEvent
from live_decode.control.trace import TRACE_NAME, plot_control, read_control_trace
from live_decode.control.watchdog import Watchdog

__all__ = [
    "TRACE_NAME",
    "Actuator",
    "ActuatorSafetyError",
    "ControlEvent",
    "ControlLoop",
    "ControlStep",
    "DensityController",
    "FopdtModel",
    "LoopEvent",
    "Watchdog",
    "fit_fopdt",
    "plot_control",
    "read_control_trace",
    "simc_gains",
]
