"""Closed-loop activation control on the simulated microscope: holding, open loop, target step.

Usage::

    python benchmarks/control_loop.py --out runs/control_bench

1. Autotune (step test) on seed 0 → kp, ki; every later run uses these gains.
2. Holding: auto mode, target 1 /µm², ``--settle`` + ``--frames`` frames on a bleaching pool;
   open loop: the same pool at the constant power auto mode used at the end of the settling.
3. Step: target 1 → 2 /µm² at frame 150, ``--seeds`` runs; settling and overshoot of the mean.

Writes ``holding/``, ``open_loop/``, ``step/`` (each with control.csv + control.png),
``holding_vs_open_loop.png``, ``step_response.png`` and ``control_metrics.json``, and prints the
numbers. The density fed back is each frame's ground truth, delayed by ``--latency`` frames (no
network; see live_decode.testing.control_loop).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from live_decode.testing.control_loop import (
    LoopRecord,
    bleaching_config,
    holding_error,
    run_simulated_loop,
    step_response,
    with_laser_power,
)

TARGET = 1.0
STEP_AT = 150
STEP_FRAMES = 450


def block_mean(x: np.ndarray, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(centre frame, mean) over consecutive blocks of ``n`` frames."""
    m = len(x) // n * n
    return np.arange(m // n) * n + n / 2, x[:m].reshape(-1, n).mean(axis=1)


def plot_holding(auto: LoopRecord, open_loop: LoopRecord, settle: int, path: Path) -> None:
    fig = Figure(figsize=(9, 6), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    top.axhspan(TARGET * 0.85, TARGET * 1.15, color="0.9", label="target ±15 %")
    top.axhline(TARGET, color="k", ls="--", lw=1)
    for rec, label, color in ((auto, "auto", "tab:blue"), (open_loop, "constant power", "tab:red")):
        top.plot(rec.density_per_um2, ".", ms=1, color=color, alpha=0.25)
        top.plot(
            *block_mean(rec.density_per_um2), color=color, lw=1.5, label=f"{label} (20-frame mean)"
        )
        bottom.plot(rec.laser_mw, color=color, lw=1.2, label=label)
    for ax in (top, bottom):
        ax.axvline(settle, color="0.4", lw=0.8, ls=":")
    top.set_ylabel("density (emitters µm⁻² frame⁻¹)")
    top.legend(loc="lower left", fontsize="small")
    bottom.set_ylabel("405 nm (mW)")
    bottom.set_xlabel("frame")
    bottom.legend(loc="upper left", fontsize="small")
    fig.suptitle("Holding a density on a bleaching pool: closed loop vs constant power")
    fig.savefig(path, dpi=110)


def plot_step(records: list[LoopRecord], path: Path) -> None:
    fig = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    frames = np.arange(len(records[0].density_per_um2)) - STEP_AT
    mean = np.mean([r.density_per_um2 for r in records], axis=0)
    for r in records:
        top.plot(frames, r.density_per_um2, color="0.8", lw=0.5)
        bottom.plot(frames, r.laser_mw, color="0.8", lw=0.5)
    top.plot(frames, mean, color="tab:blue", lw=1.5, label=f"mean of {len(records)} runs")
    top.plot(frames, records[0].target_per_um2, color="k", ls="--", lw=1, label="target")
    top.axhspan(1.8, 2.2, color="tab:green", alpha=0.1, label="±10 % of the new target")
    bottom.plot(frames, np.mean([r.laser_mw for r in records], axis=0), color="tab:purple")
    top.set_ylabel("density (emitters µm⁻² frame⁻¹)")
    top.legend(loc="lower right", fontsize="small")
    bottom.set_ylabel("405 nm (mW)")
    bottom.set_xlabel("frames after the target step")
    top.set_xlim(-50, 150)
    fig.suptitle("Target step 1 → 2 emitters/µm²")
    fig.savefig(path, dpi=110)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--frames", type=int, default=2000, help="frames evaluated after settling")
    p.add_argument("--settle", type=int, default=200, help="frames before the evaluation")
    p.add_argument("--seeds", type=int, default=8, help="runs averaged for the step response")
    p.add_argument("--latency", type=int, default=2, help="frames until a density arrives")
    args = p.parse_args()
    torch.set_num_threads(1)  # small frames: one thread is fastest and leaves the cores alone
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    tuned = run_simulated_loop(bleaching_config(0), 1, autotune=True, latency_frames=args.latency)
    kp, ki = tuned.gains
    model = tuned.model
    cfg = {"kp": kp, "ki": ki, "target_density_per_um2": TARGET}

    n = args.settle + args.frames
    auto = run_simulated_loop(
        bleaching_config(1, mode="auto", **cfg),
        n,
        latency_frames=args.latency,
        run_dir=out / "holding",
    )
    power = float(np.round(auto.laser_mw[args.settle], 2))
    open_cfg = with_laser_power(bleaching_config(1, mode="off", **cfg), power)
    open_loop = run_simulated_loop(
        open_cfg, n, latency_frames=args.latency, run_dir=out / "open_loop"
    )

    steps = [
        run_simulated_loop(
            bleaching_config(100 + s, mode="auto", **cfg),
            STEP_FRAMES,
            target=lambda k: TARGET if k < STEP_AT else 2 * TARGET,
            latency_frames=args.latency,
            run_dir=out / "step" if s == 0 else None,
        )
        for s in range(args.seeds)
    ]
    held, drift = holding_error(auto, args.settle), holding_error(open_loop, args.settle)
    step = step_response(steps, STEP_AT)
    metrics: dict[str, object] = {
        "config": {
            "fov_px": [32, 32],
            "pixel_size_nm": 320.0,
            "camera": "scmos",
            "bleach_probability": 0.15,
            "latency_frames": args.latency,
            "settle_frames": args.settle,
            "frames": args.frames,
            "step_seeds": args.seeds,
        },
        "autotune": {
            "kp": kp,
            "ki": ki,
            "gain_per_mw": None if model is None else model.gain_per_mw,
            "time_constant_frames": None if model is None else model.time_constant_frames,
            "dead_time_frames": None if model is None else model.dead_time_frames,
        },
        "holding_auto": held,
        "holding_open_loop": drift,
        "open_loop_power_mw": power,
        "step": step,
        "elapsed_s": time.perf_counter() - t0,
    }
    plot_holding(auto, open_loop, args.settle, out / "holding_vs_open_loop.png")
    plot_step(steps, out / "step_response.png")
    (out / "control_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    a, o, s = held, drift, step
    print(f"autotune: kp={kp:.3g} mW per /µm², ki={ki:.3g} per frame; model {model}")
    print(
        f"holding (auto):  RMS error {a['rms_frame']:.1%} per frame "
        f"(counting floor {a['counting_floor']:.1%}), {a['rms_block']:.1%} on 20-frame means; "
        f"laser {a['laser_start_mw']:.1f} -> {a['laser_end_mw']:.1f} mW"
    )
    print(
        f"open loop @ {power:g} mW: RMS error {o['rms_frame']:.1%} per frame, "
        f"{o['rms_block']:.1%} on 20-frame means, bias {o['bias']:.1%}"
    )
    print(
        f"step 1 -> 2 /µm²: settles (±10 %) in {s['settling_frames']:.0f} frames, "
        f"overshoot {s['overshoot']:.1%}, 90 % rise in {s['rise_frames']:.0f} frames"
    )
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
