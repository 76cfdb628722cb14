"""Simulation throughput (pytest-benchmark): training batches and the live microscope.

Run with ``pytest benchmarks/bench_simulation.py``; each benchmark reports ``frames_per_s`` in
``extra_info`` (``--benchmark-json`` keeps it).

- ``WindowSimulator.sample``: one training batch of 64 windows × 3 frames × 40×40 px at
  1.25 emitters/µm² (100 nm px → 16 µm², ~20 emitters per frame), on CPU and, if present, CUDA.
- ``SimulatedMicroscope.next_frame``: one 64×64 px frame of configs/demo.yaml (filaments, EMCCD).

CPU cases run with torch's default thread count and with one thread: these tensors are small,
and on a busy machine intra-op threads mostly wait for each other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from live_decode.config import Config, load_config
from live_decode.simulation.batch import WindowSimulator
from live_decode.simulation.microscope import SimulatedMicroscope

DEMO = Path(__file__).parents[1] / "configs" / "demo.yaml"
BATCH, FRAMES, CROP_PX, DENSITY_PER_UM2 = 64, 3, 40, 1.25

DEVICES = [
    "cpu",
    pytest.param("cpu-1thread", id="cpu-1thread"),
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
        ],
    ),
]


@pytest.fixture(scope="module")
def demo_config() -> Config:
    return load_config(DEMO)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> Iterator[str]:
    """The torch device; ``cpu-1thread`` is the CPU with ``torch.set_num_threads(1)``."""
    name: str = request.param
    threads = torch.get_num_threads()
    if name == "cpu-1thread":
        torch.set_num_threads(1)
    try:
        yield name.removesuffix("-1thread")
    finally:
        torch.set_num_threads(threads)


def _report(benchmark: Any, frames_per_call: int) -> None:
    mean_s = float(benchmark.stats.stats.mean)
    benchmark.extra_info["frames_per_call"] = frames_per_call
    benchmark.extra_info["frames_per_s"] = frames_per_call / mean_s
    benchmark.extra_info["torch_threads"] = torch.get_num_threads()


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_training_batch(benchmark: Any, demo_config: Config, device: str) -> None:
    """64 × 3 frames of 40×40 px, ~20 emitters per frame."""
    sim = WindowSimulator(demo_config, (CROP_PX, CROP_PX), n_frames=FRAMES, device=device)
    gen = torch.Generator(device).manual_seed(0)
    densities = torch.full((BATCH,), DENSITY_PER_UM2, device=device)

    def batch() -> torch.Tensor:
        adu = sim.sample(densities, gen).adu
        if adu.is_cuda:
            torch.cuda.synchronize()
        return adu

    adu = batch()  # warm-up (CUDA context, kernels)
    assert adu.shape == (BATCH, FRAMES, CROP_PX, CROP_PX)
    _run(benchmark, batch, rounds=20)
    _report(benchmark, BATCH * FRAMES)


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_microscope_next_frame(benchmark: Any, demo_config: Config, device: str) -> None:
    """One 64×64 px frame of the live simulated microscope (pool step, render, camera)."""
    microscope = SimulatedMicroscope(demo_config, device=device)
    assert microscope.fov_px == (64, 64)
    _run(benchmark, microscope.next_frame, rounds=200)
    _report(benchmark, 1)


def _run(benchmark: Any, fn: Callable[[], object], rounds: int) -> None:
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=2, iterations=1)
