"""Shared set-up of the inference and training benchmarks.

- CPU threads: ``LIVE_DECODE_BENCH_THREADS`` if set, else the cores this process may run on.
- ``LIVE_DECODE_BENCH_SLOW=1`` adds the 1024² and 2048² inference cases on CPU (always on CUDA).
- Peaks: the best rates of a large matmul and of a large 3×3 convolution per dtype, measured in
  the same run when first needed and again at its end (the higher counts); achieved FLOP/s are
  reported as fractions of both.
- Baselines: frames/s of DECODE's published way of running the network (fp32, no feature cache),
  measured in the same run; every other case reports its ratio to it.
"""

from __future__ import annotations

import copy
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from live_decode.config import Config, load_config
from live_decode.inference.engine import Localizer, SpeedOptions
from live_decode.messages import CameraMeta
from live_decode.model.checkpoint import ModelCard, bundled_model_path, load_model, make_card
from live_decode.model.network import DecodeNet
from live_decode.simulation.microscope import SimulatedMicroscope
from live_decode.sources.base import camera_from_config

DEMO = Path(__file__).parents[1] / "configs" / "demo.yaml"
THREADS_ENV, SLOW_ENV = "LIVE_DECODE_BENCH_THREADS", "LIVE_DECODE_BENCH_SLOW"
NETWORKS = {"lite": 24, "paper": 48}
MOVIE_PX, MOVIE_FRAMES = 256, 4  # simulated once; cropped or tiled to every size

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.gpu,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    ],
)
DEVICES = ["cpu", CUDA]


def bench_threads() -> int:
    """CPU threads for torch: ``LIVE_DECODE_BENCH_THREADS``, else the cores that are free.

    Free = cores this process may use minus the 1-minute load average, at least 1. Intra-op
    threads that share cores with another busy process mostly wait for each other: on a 2-core
    box beside a training run, 2 threads ran the lite network 10× slower than 1.
    """
    env = os.environ.get(THREADS_ENV)
    if env:
        return max(1, int(env))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, int(cores - busy + 0.5)))


def slow_enabled() -> bool:
    return os.environ.get(SLOW_ENV, "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    # Benchmark modules are named bench_*.py; without this `pytest benchmarks` collects nothing.
    config.addinivalue_line("python_files", "bench_*.py")


@pytest.fixture(scope="session", autouse=True)
def torch_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    n = bench_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def torch_device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.param)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or "CPU"
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return name
    lines = text.splitlines()
    models = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    flags = next((ln for ln in lines if ln.startswith("flags")), "")
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return f"{models[0] if models else name} ({len(models)} cores listed; {', '.join(isa)})"


def describe(benchmark: Any, device: torch.device, **info: object) -> None:
    """Common ``extra_info``: where it ran and what it ran."""
    benchmark.extra_info.update(
        device=device_name(device),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        load_avg_1min=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        **info,
    )


def best_seconds(fn: Callable[[], object], device: torch.device, rounds: int) -> float:
    """Best wall time of ``rounds`` calls after one warm-up (device synchronised)."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------- peaks
PEAK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def matmul_peak_gflop_per_s(device: torch.device, dtype_name: str) -> float:
    """Best rate of an n×n by n×n matmul; ``tf32`` is float32 with TF32 tensor cores allowed."""
    n = 8192 if device.type == "cuda" else 1536
    dtype = PEAK_DTYPES["float32" if dtype_name == "tf32" else dtype_name]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = dtype_name == "tf32"
    try:
        seconds = best_seconds(lambda: a @ b, device, rounds=10)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / seconds / 1e9


def conv_peak_gflop_per_s(device: torch.device, dtype_name: str) -> float:
    """Best rate of the network's commonest kind of layer: a 3×3 convolution, 96 → 96, NHWC.

    On CPUs whose BLAS is slow (MKL's sgemm on AMD) oneDNN's convolutions beat the matmul, so
    this is the second, often higher, ceiling.
    """
    batch, px = (32, 256) if device.type == "cuda" else (8, 64)
    conv = torch.nn.Conv2d(96, 96, 3, padding=1).to(device)
    conv = conv.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(batch, 96, px, px, device=device).to(memory_format=torch.channels_last)
    amp = dtype_name in ("bfloat16", "float16")
    dtype = PEAK_DTYPES.get(dtype_name, torch.float32)

    def run() -> torch.Tensor:
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=amp):
            out: torch.Tensor = conv(x)
        return out

    seconds = best_seconds(run, device, rounds=15)
    return 2 * 96 * 96 * 9 * batch * px * px / seconds / 1e9


@dataclass
class Peaks:
    """Ceilings in GFLOP/s per (device type, op, dtype name), measured on first use.

    Each is the best of many short runs, so a shared CPU's busy moments are skipped.
    """

    measured: dict[tuple[str, str, str], float] = field(default_factory=dict)
    remeasured: bool = False

    def get(self, device: torch.device, dtype_name: str, op: str = "matmul") -> float:
        key = (device.type, op, dtype_name)
        if key not in self.measured:
            fn = matmul_peak_gflop_per_s if op == "matmul" else conv_peak_gflop_per_s
            self.measured[key] = fn(device, dtype_name)
        return self.measured[key]

    def remeasure(self) -> None:
        """Measure every ceiling again and keep the higher figure (the load may have dropped)."""
        for device_type, op, dtype_name in list(self.measured):
            fn = matmul_peak_gflop_per_s if op == "matmul" else conv_peak_gflop_per_s
            again = fn(torch.device(device_type), dtype_name)
            key = (device_type, op, dtype_name)
            self.measured[key] = max(self.measured[key], again)

    def report(self, device: torch.device, dtype_name: str, gflop_per_s: float) -> dict[str, Any]:
        """``extra_info`` entries: both ceilings and the fractions of them."""
        self.get(device, dtype_name, "matmul")
        self.get(device, dtype_name, "conv")
        return self.fractions(device.type, dtype_name, gflop_per_s)

    def fractions(self, device_type: str, dtype_name: str, gflop_per_s: float) -> dict[str, Any]:
        matmul = self.measured[(device_type, "matmul", dtype_name)]
        conv = self.measured[(device_type, "conv", dtype_name)]
        return {
            "gflop_per_s": round(gflop_per_s, 2),
            "peak_dtype": dtype_name,
            "matmul_peak_gflop_per_s": round(matmul, 1),
            "fraction_of_matmul_peak": round(gflop_per_s / matmul, 4),
            "conv_peak_gflop_per_s": round(conv, 1),
            "fraction_of_conv_peak": round(gflop_per_s / conv, 4),
        }


_SESSION_PEAKS: list[Peaks] = []


@pytest.fixture(scope="session")
def peaks() -> Peaks:
    p = Peaks()
    _SESSION_PEAKS.append(p)  # the JSON hook re-measures them at the end of the run
    return p


# --------------------------------------------------------------------------- baselines
@dataclass
class Baselines:
    """frames/s of the baseline cases, keyed by (device, network, size, baseline path)."""

    fps: dict[tuple[str, str, int, str], float] = field(default_factory=dict)


@pytest.fixture(scope="session")
def baselines() -> Baselines:
    return Baselines()


# --------------------------------------------------------------------------- data and models
@pytest.fixture(scope="session")
def demo_config() -> Config:
    return load_config(DEMO)


def camera_meta(cfg: Config) -> CameraMeta:
    return camera_from_config(cfg)


@pytest.fixture(scope="session")
def base_movie(demo_config: Config) -> np.ndarray:
    """(4, 256, 256) uint16 ADU of the demo acquisition (filaments, EMCCD), simulated once."""
    mic = demo_config.microscope.model_copy(update={"fov_px": (MOVIE_PX, MOVIE_PX)})
    cfg = demo_config.model_copy(update={"microscope": mic})
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scope = SimulatedMicroscope(cfg, device=device, warm_up_frames=20)
    return np.stack([scope.next_frame().adu for _ in range(MOVIE_FRAMES)])


def movie_frames(base: np.ndarray, size_px: int, n: int) -> np.ndarray:
    """(n, size, size) frames: the base movie cropped or tiled, frames cycled."""
    reps = -(-size_px // base.shape[1])
    tiled = np.tile(base, (1, reps, reps))[:, :size_px, :size_px]
    return np.ascontiguousarray(tiled[np.arange(n) % len(base)])


def load_network(name: str) -> tuple[DecodeNet, ModelCard]:
    """lite: the bundled demo model (trained); paper: 48 filters, DECODE's initialisation."""
    net, card = load_model(bundled_model_path())
    if name == "lite":
        return net, card
    cfg = card.parsed_config
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"size": "paper"})})
    torch.manual_seed(0)
    paper = DecodeNet(NETWORKS[name], temporal_context=True, predict_z=False)
    with torch.no_grad():
        # Untrained, the p head fires everywhere (~1,000 detections per 64² frame); scaled down
        # it detects ~14 per 64² frame, the order of the trained lite model's 5, so the
        # post-processing load is plausible. Speed only: these localizations mean nothing.
        paper.head_p[-1].weight.mul_(0.3)
    return paper, make_card(name, cfg, paper)


def make_localizer(
    name: str, device: torch.device, speed: SpeedOptions | None = None, amp: bool = True
) -> Localizer:
    """A localizer with its own copy of the network (channels_last converts weights in place)."""
    net, card = load_network(name)
    return Localizer(copy.deepcopy(net), card, device, amp=amp, speed=speed)


# --------------------------------------------------------------------------- markdown summary
def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: object, output_json: dict[str, Any]
) -> None:
    """With ``--benchmark-json=X.json`` also write ``X.md``, the tables of benchmarks/RESULTS.md."""
    _update_fractions(output_json)
    path = config.getoption("benchmark_json", None)
    if path is not None:
        Path(path).with_suffix(".md").write_text(render_markdown(output_json), encoding="utf-8")


def _update_fractions(output_json: dict[str, Any]) -> None:
    """Re-measure the ceilings now; fractions of the higher figure replace those in the JSON."""
    if not _SESSION_PEAKS:
        return
    peaks = _SESSION_PEAKS[-1]
    if not peaks.remeasured:
        peaks.remeasure()
        peaks.remeasured = True
    for bench in output_json.get("benchmarks", []):
        info = bench.get("extra_info", {})
        device_type = "cuda" if "cuda" in bench["name"] else "cpu"
        if "peak_dtype" in info and "gflop_per_s" in info:
            info.update(peaks.fractions(device_type, info["peak_dtype"], info["gflop_per_s"]))
        elif bench["name"].startswith("test_peak"):
            key = (device_type, info["op"], info["dtype"])
            info["peak_gflop_per_s"] = round(peaks.measured.get(key, math.nan), 1)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join("—" if v is None else str(v) for v in r) + " |" for r in rows]
    return [*lines, ""]


def _pct(x: object) -> str | None:
    return None if not isinstance(x, int | float) else f"{100 * x:.0f} %"


def render_markdown(output_json: dict[str, Any]) -> str:
    """Markdown tables of the peaks, throughput, latency and training cases of a JSON report."""
    runs = output_json.get("benchmarks", [])
    by = {k: [b for b in runs if b["name"].startswith(k)] for k in _PREFIXES}
    out = [f"Run {output_json.get('datetime', '')}; torch {torch.__version__}.", ""]
    if by["test_peak"]:
        rows = [
            [e["device"], e["op"], e["dtype"], e["peak_gflop_per_s"]]
            for e in (b["extra_info"] for b in by["test_peak"])
        ]
        out += ["### Measured ceilings", "", *_table(["device", "op", "dtype", "GFLOP/s"], rows)]
    if by["test_inference"]:
        rows = []
        for b in by["test_inference"]:
            e = b["extra_info"]
            rows.append(
                [e["device"].split(" (")[0], e["torch_threads"], e["network"], e["size_px"],
                 e["path"], e["variant"], e["frames_per_call"], e["frames_per_s"],
                 e["mpx_per_s"], e["ratio_to_baseline"], e["gflop_per_s"],
                 _pct(e["fraction_of_matmul_peak"]), _pct(e["fraction_of_conv_peak"])]
            )  # fmt: skip
        header = ["device", "threads", "network", "px", "path", "variant", "batch", "frames/s",
                  "Mpx/s", "× baseline", "GFLOP/s", "of matmul peak", "of conv peak"]  # fmt: skip
        out += ["### Inference throughput", "", *_table(header, rows)]
    if by["test_latency"]:
        rows = [
            [e["device"].split(" (")[0], e["network"], e["size_px"], e["camera_hz"],
             e["latency_ms_p50"], e["latency_ms_p99"], e["mean_batch"],
             e["achieved_frames_per_s"], e["kept_up"]]
            for e in (b["extra_info"] for b in by["test_latency"])
        ]  # fmt: skip
        header = ["device", "network", "px", "camera Hz", "p50 ms", "p99 ms", "mean batch",
                  "frames/s", "kept up"]  # fmt: skip
        out += ["### Streaming latency at a fixed camera rate", "", *_table(header, rows)]
    if by["test_worker_zeromq"]:
        rows = [
            [e["device"].split(" (")[0], e["network"], e["size_px"], e["frames"],
             e["frames_per_s"], e["mpx_per_s"], e["ratio_to_baseline"], e["mean_batch"],
             e["queueing_latency_ms_p50"], e["locs_per_frame"]]
            for e in (b["extra_info"] for b in by["test_worker_zeromq"])
        ]  # fmt: skip
        header = ["device", "network", "px", "frames", "frames/s", "Mpx/s", "× baseline",
                  "mean batch", "queueing p50 ms", "locs/frame"]  # fmt: skip
        out += ["### Whole worker over ZeroMQ (lossless source, as fast as it goes)", ""]
        out += _table(header, rows)
    if by["test_train_step"]:
        rows = [
            [e["device"].split(" (")[0], e["network"], e["amp"], e["batch"], e["s_per_step"],
             e["steps_per_hour"], _pct(e["simulate_share"]), e["gflop_per_s"],
             _pct(e["fraction_of_matmul_peak"]), _pct(e["fraction_of_conv_peak"])]
            for e in (b["extra_info"] for b in by["test_train_step"])
        ]  # fmt: skip
        header = ["device", "network", "bf16", "batch", "s/step", "steps/h", "simulating",
                  "net GFLOP/s", "of matmul peak", "of conv peak"]  # fmt: skip
        out += ["### Training step", "", *_table(header, rows)]
    return "\n".join(out)


_PREFIXES = ("test_peak", "test_inference", "test_latency", "test_worker_zeromq", "test_train_step")
