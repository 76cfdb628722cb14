"""Automatic tuning from a step test: identify a first-order-plus-dead-time plant, set PI gains.

The test (ALICA's self-tuning PI does the same in spirit): hold the starting power ``u0`` for a
baseline, step it by ``step``, record the smoothed density the controller sees for a while. The
record is fitted by the discrete first-order-plus-dead-time (FOPDT) model

    x[k+1] = a·x[k] + (1 − a)·(u[k − θ] − u0),   a = exp(−1 / T),   y[k] = y0 + K·x[k]

(one frame = one sample; ``u[k]`` is the power applied after frame k, so frame k + 1 sees it), by
least squares on a grid of dead times θ (whole frames) and time constants T, with y0 and K solved
linearly at each grid point. The input is the power actually applied, so a rate-limited ramp is
fitted exactly. What the controller sees includes the transport latency and the smoothing window,
so both end up in θ and T, which is what the gains must allow for.

Gains follow Skogestad's SIMC rules for a PI on an FOPDT plant, with the one-sample delay of the
discrete loop added to the dead time (θ_eff = θ + 1) and the closed-loop time constant τc = θ_eff
("tight control, good robustness": gain margin ~3, phase margin ~60°):

    kp = T / (K · (τc + θ_eff)),   τI = min(T, 4 · (τc + θ_eff)),   ki = kp / τI  (per frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

#: The step's effect must exceed this many times the rms fit residual to be trusted.
MIN_SIGNAL_TO_NOISE = 3.0


@dataclass(frozen=True)
class FopdtModel:
    """A first-order-plus-dead-time fit of power → smoothed density.

    Attributes
    ----------
    gain_per_mw : float
        K, density change per unit of actuator change, (emitters µm⁻²) / mW.
    time_constant_frames : float
        T, frames.
    dead_time_frames : float
        θ_eff = θ + 1 (the loop's one-sample delay included), frames.
    baseline_per_um2 : float
        y0, the density before the step, emitters µm⁻².
    rms_residual_per_um2 : float
        Root-mean-square fit residual, emitters µm⁻².
    """

    gain_per_mw: float
    time_constant_frames: float
    dead_time_frames: float
    baseline_per_um2: float
    rms_residual_per_um2: float


def simulate_fopdt(
    u: FloatArray, u0: float, gain: float, time_constant: float, delay: int, y0: float
) -> FloatArray:
    """Response ``y[k]`` of the discrete FOPDT model (module docstring) to inputs ``u[k]``.

    Parameters
    ----------
    u : (N,) float
        Input applied after each sample, actuator units. Before ``u[0]`` the input was ``u0``.
    delay : int
        θ, whole samples (frames) of dead time beyond the loop's inherent one sample.
    """
    a = math.exp(-1.0 / time_constant)
    shifted = np.concatenate([np.full(delay, u0), u])[: len(u)] - u0
    x = np.zeros(len(u))
    for k in range(1, len(u)):
        x[k] = a * x[k - 1] + (1.0 - a) * shifted[k - 1]
    return y0 + gain * x


def fit_fopdt(
    u: FloatArray,
    y: FloatArray,
    u0: float,
    max_delay: int | None = None,
    time_constants: FloatArray | None = None,
) -> FopdtModel:
    """Least-squares FOPDT fit of a step test.

    Parameters
    ----------
    u : (N,) float
        Actuator value applied after each frame (mW).
    y : (N,) float
        Smoothed density seen at each frame, emitters µm⁻²; NaN where nothing new arrived.
    u0
        Input before the record (steady state assumed).
    max_delay
        Largest θ tried, frames (default N // 3).
    time_constants
        T grid, frames (default 40 values geometric from 0.3 to N / 2).

    Raises
    ------
    ValueError
        If the record is too short, the input never changes, or nothing fits.
    """
    u = np.asarray(u, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(u)
    if n != len(y) or n < 10:
        raise ValueError(f"a step test needs >= 10 paired samples, got u: {n}, y: {len(y)}")
    if np.ptp(np.append(u, u0)) <= 0:
        raise ValueError("the step test's input never changed: nothing to identify")
    valid = np.isfinite(y)
    if valid.sum() < 10:
        raise ValueError("fewer than 10 density samples in the step test: are stats arriving?")
    max_delay = n // 3 if max_delay is None else max_delay
    if time_constants is None:
        time_constants = np.geomspace(0.3, max(n / 2.0, 1.0), 40)
    yv = y[valid]
    best: tuple[float, float, int, float, float] | None = None  # sse, T, θ, y0, K
    for tau in time_constants:
        unit = simulate_fopdt(u, u0, 1.0, float(tau), 0, 0.0)
        for delay in range(max_delay + 1):
            x = np.concatenate([np.zeros(delay), unit])[:n][valid]
            design = np.column_stack([np.ones_like(x), x])
            coef, *_ = np.linalg.lstsq(design, yv, rcond=None)
            sse = float(np.sum((design @ coef - yv) ** 2))
            if best is None or sse < best[0]:
                best = (sse, float(tau), delay, float(coef[0]), float(coef[1]))
    if best is None:  # pragma: no cover - the grids are never empty
        raise ValueError("no FOPDT model fitted the step test")
    sse, tau, delay, y0, gain = best
    return FopdtModel(
        gain_per_mw=gain,
        time_constant_frames=tau,
        dead_time_frames=delay + 1.0,
        baseline_per_um2=y0,
        rms_residual_per_um2=math.sqrt(sse / int(valid.sum())),
    )


def simc_gains(model: FopdtModel, tau_c_frames: float | None = None) -> tuple[float, float]:
    """SIMC PI gains (kp in mW per emitter µm⁻², ki in the same per frame) for ``model``.

    Parameters
    ----------
    tau_c_frames
        Desired closed-loop time constant; default the effective dead time (SIMC's tight choice).

    Raises
    ------
    ValueError
        If the gain is not positive (more light must mean more emitters).
    """
    k, t, theta = model.gain_per_mw, model.time_constant_frames, model.dead_time_frames
    if not k > 0:
        raise ValueError(
            f"the step test found a plant gain of {k:.3g} per mW: more 405 light did not raise the "
            "density. Check that the laser reaches the sample and the stats are from this source"
        )
    tau_c = theta if tau_c_frames is None else tau_c_frames
    kp = t / (k * (tau_c + theta))
    tau_i = min(t, 4.0 * (tau_c + theta))
    return kp, kp / tau_i


StepPhase = Literal["baseline", "response", "done"]


class StepTest:
    """The step test as a small state machine, advanced by the controller once per frame.

    Parameters
    ----------
    u0
        Actuator value held during the baseline.
    step
        Step size; it goes up if there is room below ``limits[1]``, else down.
    baseline_frames, response_frames
        Frames before and after the step.
    limits
        (lowest, highest) allowed actuator values.
    """

    def __init__(
        self,
        u0: float,
        step: float,
        baseline_frames: int,
        response_frames: int,
        limits: tuple[float, float],
    ) -> None:
        lo, hi = limits
        up, down = min(u0 + step, hi), max(u0 - step, lo)
        self.u0 = u0
        self.u1 = up if up - u0 >= u0 - down else down
        if self.u1 == u0:
            raise ValueError(
                f"no room for a step test between the limits [{lo:g}, {hi:g}] around {u0:g}"
            )
        self.baseline_frames = baseline_frames
        self.response_frames = response_frames
        self.frames = 0
        self.applied: list[float] = []
        self.seen: list[float] = []

    @property
    def phase(self) -> StepPhase:
        if self.frames < self.baseline_frames:
            return "baseline"
        if self.frames < self.baseline_frames + self.response_frames:
            return "response"
        return "done"

    def command(self) -> float:
        """The actuator value the test wants for the next frame."""
        return self.u0 if self.phase == "baseline" else self.u1

    def record(self, applied: float, smoothed_per_um2: float | None) -> None:
        """Log one frame: the value applied after it, the smoothed density (None: no new data)."""
        self.applied.append(applied)
        self.seen.append(math.nan if smoothed_per_um2 is None else smoothed_per_um2)
        self.frames += 1

    def identify(self) -> FopdtModel:
        """Fit the record (:func:`fit_fopdt`); ``ValueError`` if the response is lost in noise."""
        u = np.asarray(self.applied)
        y = np.asarray(self.seen)
        # Drop the first smoothing transient: fit from the second half of the baseline on.
        start = self.baseline_frames // 2
        u_prev = float(u[start - 1]) if start > 0 else self.u0
        model = fit_fopdt(u[start:], y[start:], u_prev, max_delay=self.response_frames // 2)
        effect = abs(model.gain_per_mw * (self.u1 - self.u0))
        if effect < MIN_SIGNAL_TO_NOISE * model.rms_residual_per_um2:
            raise ValueError(
                f"the step changed the density by {effect:.3g} /µm², under "
                f"{MIN_SIGNAL_TO_NOISE:g}× the noise ({model.rms_residual_per_um2:.3g} /µm²): "
                "use a larger autotune_step_mw or more autotune_response_frames"
            )
        return model
