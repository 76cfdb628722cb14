"""The control loop closed on the simulated microscope without the network: tests and benchmarks.

Each frame's ground-truth density (:attr:`SimulatedFrame.density_per_um2`, what a perfect
localizer would report) reaches the :class:`ControlLoop` as a ``stats`` message after
``latency_frames`` frames (the worker's one frame of temporal context plus transport) — or after
``delay_frames(k)`` frames, in order, to inject a worker stall or lag — through
the same :meth:`ControlLoop.ingest` / :meth:`ControlLoop.on_tick` / :meth:`ControlLoop.handle`
path the live loop uses; only the sockets are left out. The loop's clock is the frame clock
(frame interval × frames), so the watchdog and the data age see the time the camera would.
Fixed seeds make a run deterministic.

Metrics: :func:`holding_error` (RMS relative error against the target, per frame and over
blocks that average out counting noise) and :func:`step_response` (settling frames and overshoot
of a target step, on the mean response of several runs).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode.config import Config, config_from_dict
from live_decode.control.autotune import FopdtModel
from live_decode.control.loop import ControlLoop
from live_decode.messages import FrameStats, StatsMsg, WorkerStats
from live_decode.sources.simulated import SimulatedLaserActuator, SimulatedSource
from live_decode.transport.control import SetMode, SetTarget

FloatArray = npt.NDArray[np.float64]
Schedule = Callable[[int], float]
"""Target density (emitters µm⁻²) in force at a frame index."""

_WORKER = WorkerStats(fps=0.0, latency_ms=0.0, queue_depth=0, dropped_upstream=0)


class _FrameClock:
    """The loop's clock in a simulation: seconds of camera time, advanced frame by frame."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bleaching_config(seed: int = 0, **control: object) -> Config:
    """The simulated microscope of the control experiments: a pool that bleaches noticeably.

    200 fluorophores/µm², 15 % of on-events bleach (holding 1 /µm² bleaches ~60 % of the pool in
    2,300 frames, so the power must rise ~2×), 405 nm starting at 9 mW (≈1 /µm²), 20 ms frames.
    The field is 105 µm² (~105 emitters per frame at 1 /µm²: 10 % counting noise) imaged on 32 ×
    32 sCMOS pixels of 320 nm: the loop sees the true density, not the image, so the camera is
    chosen to be cheap to simulate (~1 ms a frame). ``control`` overrides keys of the ``control``
    section.
    """
    return config_from_dict(
        {
            "camera": {"kind": "scmos", "pixel_size_nm": 320.0, "em_gain": 1.0, "e_per_adu": 0.5},
            "psf": {"kind": "gaussian", "roi_px": 5},
            "photophysics": {"bleach_probability": 0.15},
            "microscope": {"fov_px": [32, 32], "laser": {"power_mw": 9.0}, "seed": seed},
            "control": dict(control),
        },
        source="bleaching_config",
    )


def with_laser_power(cfg: Config, power_mw: float) -> Config:
    """``cfg`` with the 405 nm laser starting at ``power_mw`` (e.g. for an open-loop run)."""
    laser = cfg.microscope.laser.model_copy(update={"power_mw": power_mw})
    return cfg.model_copy(update={"microscope": cfg.microscope.model_copy(update={"laser": laser})})


@dataclass(frozen=True)
class LoopRecord:
    """Per-frame record of a simulated closed-loop run, (N,) each.

    ``density_per_um2`` is the true density of each frame, ``laser_mw`` the power during it,
    ``target_per_um2`` the target in force when it was taken. ``gains`` = (kp, ki) at the end;
    ``model`` the autotune fit, if one ran; ``counts`` the loop's :meth:`ControlLoop.counts`.
    """

    density_per_um2: FloatArray
    target_per_um2: FloatArray
    laser_mw: FloatArray
    fov_area_um2: float
    gains: tuple[float, float]
    model: FopdtModel | None = None
    counts: Mapping[str, int] = field(default_factory=dict)


def run_simulated_loop(
    cfg: Config,
    frames: int,
    *,
    target: Schedule | None = None,
    latency_frames: int = 2,
    delay_frames: Callable[[int], int] | None = None,
    autotune: bool = False,
    run_dir: Path | None = None,
) -> LoopRecord:
    """Run the loop for ``frames`` frames on the simulated microscope of ``cfg``.

    Parameters
    ----------
    cfg
        Microscope, photophysics and the ``control`` section (its mode at start).
    target
        Target density per frame; changes are sent as ``set_target`` commands.
    latency_frames
        Frames between a frame and the arrival of its density.
    delay_frames
        If given, frames between frame ``k`` (counted from the start of the recorded frames)
        and the arrival of its density, instead of ``latency_frames``; deliveries stay in
        order, so a long delay also holds back the frames after it (a stalled worker's queue).
    autotune
        Run a step test first (``set_mode autotune``); the frames it takes are not recorded.
    run_dir
        Where ``control.csv`` and ``control.png`` go (None: no trace).
    """
    source = SimulatedSource(cfg)
    frame_s = cfg.microscope.frame_interval_ms / 1000.0
    clock = _FrameClock()
    loop = ControlLoop(cfg.control, SimulatedLaserActuator(source), run_dir=run_dir, clock=clock)
    pending: deque[tuple[int, FrameStats]] = deque()  # (frame it arrives at, its stats)
    area = source.microscope.fov_area_um2
    recorded_from: list[int] = []  # source index of the first recorded frame

    def advance() -> tuple[float, float]:
        sf = source.read()
        truth = source.last
        if sf is None or truth is None:  # pragma: no cover - the simulated source is endless
            raise RuntimeError("the simulated source ended")
        clock.now += frame_s
        n = len(truth.truth)
        nan = math.nan
        row = FrameStats(sf.index, n, truth.density_per_um2, nan, nan, nan)
        k = sf.index - recorded_from[0] if recorded_from else -1
        delay = delay_frames(k) if delay_frames is not None and k >= 0 else latency_frames
        due = max(sf.index + delay, pending[-1][0] if pending else 0)
        pending.append((due, row))
        while pending and pending[0][0] <= sf.index:
            loop.ingest(StatsMsg(frame_stats=(pending.popleft()[1],), worker=_WORKER))
        loop.on_tick(sf.index)
        return truth.density_per_um2, truth.laser_mw

    try:
        if autotune:
            loop.handle(SetMode("autotune"))
            while loop.controller.mode == "autotune":
                advance()
        density, laser, targets = np.empty(frames), np.empty(frames), np.empty(frames)
        recorded_from.append(source.microscope.frame_index)
        for k in range(frames):
            if target is not None and target(k) != loop.controller.target:
                loop.handle(SetTarget(target(k)))
            targets[k] = loop.controller.target
            density[k], laser[k] = advance()
    finally:
        loop.close()
        source.close()
    c = loop.controller
    return LoopRecord(density, targets, laser, area, (c.kp, c.ki), c.model, loop.counts())


def holding_error(
    record: LoopRecord, settle_frames: int, block_frames: int = 20
) -> dict[str, float]:
    """RMS relative error of the density against the target after ``settle_frames``.

    Returns
    -------
    dict
        ``rms_frame`` (per frame: includes the counting noise no controller can remove),
        ``rms_block`` (means over ``block_frames``-frame blocks), ``counting_floor``
        (1/√(target·area), the per-frame Poisson floor), ``bias`` (mean relative error),
        ``laser_start_mw`` / ``laser_end_mw``.
    """
    d = record.density_per_um2[settle_frames:]
    t = record.target_per_um2[settle_frames:]
    rel = (d - t) / t
    n = len(d) // block_frames * block_frames
    blocks = rel[:n].reshape(-1, block_frames).mean(axis=1)
    return {
        "rms_frame": float(np.sqrt(np.mean(rel**2))),
        "rms_block": float(np.sqrt(np.mean(blocks**2))),
        "counting_floor": float(np.sqrt(np.mean(1.0 / (t * record.fov_area_um2)))),
        "bias": float(rel.mean()),
        "laser_start_mw": float(record.laser_mw[settle_frames]),
        "laser_end_mw": float(record.laser_mw[-1]),
    }


def step_response(
    records: Sequence[LoopRecord],
    step_frame: int,
    band: float = 0.1,
    window: int = 5,
    transient_frames: int = 100,
) -> dict[str, float]:
    """Settling and overshoot of a target step, on the mean response of ``records``.

    The mean over runs (different seeds) and a centred ``window``-frame average remove most of
    the counting noise, which would otherwise read as overshoot; the peak is looked for in the
    first ``transient_frames`` after the step only (later excursions are noise, not overshoot).

    Returns
    -------
    dict
        ``settling_frames``: frames after the step until the response stays within ±``band`` of
        the new target; ``overshoot``: (peak − new) / (new − old) (0 if it never passes the new
        target); ``rise_frames``: frames to 90 % of the step.
    """
    mean = np.mean([r.density_per_um2 for r in records], axis=0)
    smooth = np.convolve(mean, np.ones(window) / window, mode="same")
    old = float(records[0].target_per_um2[step_frame - 1])
    new = float(records[0].target_per_um2[step_frame])
    post = smooth[step_frame : len(smooth) - window // 2]
    outside = np.nonzero(np.abs(post - new) > band * abs(new))[0]
    progress = (post - old) / (new - old)  # 0 before, 1 at the new target, either direction
    rise = np.nonzero(progress >= 0.9)[0]
    return {
        "settling_frames": float(outside[-1] + 1) if len(outside) else 0.0,
        "overshoot": max(0.0, float(progress[:transient_frames].max() - 1.0)),
        "rise_frames": float(rise[0]) if len(rise) else math.inf,
    }
