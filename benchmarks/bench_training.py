"""Training step time and the share of it spent simulating (``Trainer.times``).

Run: ``pytest benchmarks/bench_training.py --benchmark-only``. One step = simulate a batch of
3-frame windows (configs/demo.yaml: 32 × 3 × 40×40 px) → network → loss → AdamW. ``extra_info``
holds s/step, steps/hour, ``simulate_share`` and the achieved GFLOP/s of the network part
(forward + backward ≈ 3 × the forward's analytic FLOP, uncached: training runs ``net.forward``)
as fractions of the matmul and convolution ceilings measured in the same run. CUDA cases run with
and without bf16 autocast (``training.amp``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import CUDA, NETWORKS, Peaks, describe
from flops import decode_flops

from live_decode.config import Config
from live_decode.training.trainer import StepTimes, Trainer

ROUNDS = {"cpu": {"lite": 3, "paper": 2}, "cuda": {"lite": 20, "paper": 20}}
CASES = [
    pytest.param("cpu", False, id="cpu-fp32"),
    pytest.param("cuda", False, marks=CUDA.marks, id="cuda-fp32"),
    pytest.param("cuda", True, marks=CUDA.marks, id="cuda-bf16"),
]


@pytest.mark.parametrize("net_name", list(NETWORKS))
@pytest.mark.parametrize(("device", "amp"), CASES)
def test_train_step(
    benchmark: Any,
    demo_config: Config,
    device: str,
    amp: bool,
    net_name: str,
    tmp_path: Path,
    peaks: Peaks,
) -> None:
    training = demo_config.training.model_copy(update={"eval_samples": 8, "amp": amp})
    model = demo_config.model.model_copy(update={"size": net_name})
    cfg = demo_config.model_copy(update={"training": training, "model": model})
    trainer = Trainer(cfg, tmp_path, device=device, name=net_name)
    dev = trainer.device
    trainer.train_step()  # warm-up: allocations, kernels
    trainer.times = StepTimes()
    rounds = ROUNDS[dev.type][net_name]
    loss = benchmark.pedantic(trainer.train_step, rounds=rounds, warmup_rounds=0, iterations=1)
    assert math.isfinite(loss)

    step_s = float(benchmark.stats.stats.median)
    t = cfg.training
    flop = 3 * decode_flops(trainer.net).uncached * t.crop_px**2 * t.batch_size
    net_s = step_s * (1 - trainer.times.simulate_share)
    peak_name = "bfloat16" if amp else ("tf32" if dev.type == "cuda" else "float32")
    describe(
        benchmark,
        dev,
        network=net_name,
        filters=NETWORKS[net_name],
        amp=amp,
        batch=f"{t.batch_size} × 3 × {t.crop_px}×{t.crop_px} px",
        s_per_step=round(step_s, 4),
        steps_per_hour=round(3600 / step_s),
        simulate_share=round(trainer.times.simulate_share, 4),
        **peaks.report(dev, peak_name, flop / net_s / 1e9),
    )
    benchmark.group = f"{dev.type} training step"
