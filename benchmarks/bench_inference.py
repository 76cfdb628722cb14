"""Inference speed: network only, full path, streaming processor, latency at a camera rate.

Run: ``pytest benchmarks/bench_inference.py --benchmark-only --benchmark-json=out.json`` (or
``make bench`` for the whole suite). CUDA cases are skipped without a GPU; 1024² and 2048² run on
CUDA, and on CPU only with ``LIVE_DECODE_BENCH_SLOW=1``.

**Baseline**, measured in the same run on the same device just before the cases it is compared
with: DECODE's published way of running the network — fp32, ``net.forward`` on (B, 3, H, W)
windows so every frame passes the frame U-Net three times, synchronous pageable host→device
copies. Two baselines: the network alone, and the full path (photon conversion, network,
post-processing, localizations as NumPy).

Paths: ``network`` (both stages with the feature cache: the frame U-Net once per frame),
``full`` (offline path on a batch), ``stream`` (``StreamProcessor``, the worker's core, in steady
state), and ``test_worker_zeromq``: the whole worker fed over tcp loopback, writing its files and
publishing (the issue's "≥ 1,000 frames/s end to end" figure on CUDA). Each reports in
``extra_info``: frames/s (median round), Mpx/s, ``ratio_to_baseline`` (network against the
network baseline; full, stream and worker against the full-path baseline),
achieved GFLOP/s from the analytic count (``flops.py``; baselines do the uncached amount of work,
the others the cached amount) and that as a fraction of a large matmul's and a large 3×3
convolution's rate measured in the same run (``test_peak``).

Variants (``SpeedOptions``): ``fp32`` feature cache only; ``channels_last``; ``bf16`` autocast;
``fast`` = ``SpeedOptions.fast(device)`` (CPU: channels_last + bf16; CUDA: channels_last + bf16 +
pinned copies on a side stream); CUDA also ``fast_unpinned``, ``fp16_channels_last``, and at 512²
``compile`` (torch.compile) and ``cudagraphs`` (torch.compile, mode reduce-overhead).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zmq
from conftest import (
    CUDA,
    DEVICES,
    NETWORKS,
    SLOW_ENV,
    Baselines,
    Peaks,
    best_seconds,
    describe,
    make_localizer,
    movie_frames,
    slow_enabled,
    sync,
)
from flops import decode_flops, traced_uncached_flop

from live_decode.inference.engine import Localizer, SpeedOptions
from live_decode.inference.offline import localize_movie
from live_decode.inference.processor import StreamProcessor
from live_decode.inference.worker import InferenceWorker, WorkerSummary
from live_decode.messages import CameraMeta, EosMsg, FrameMsg, Localizations, Message
from live_decode.model.network import DecodeNet
from live_decode.transport.frames import FramePuller, FramePusher
from live_decode.transport.results import ResultPublisher

# The demo camera (EMCCD) of the bundled model; every case converts ADU with it.
CAM = CameraMeta(
    pixel_size_nm=100.0, baseline_adu=100.0, e_per_adu=45.0, em_gain=300.0, qe=0.9, exposure_ms=20
)
SIZES = (64, 256, 512, 1024, 2048)
BIG = 1024  # and above: CUDA, or CPU with LIVE_DECODE_BENCH_SLOW=1
BATCH = {
    "cpu": {64: 8, 256: 1, 512: 1, 1024: 1, 2048: 1},
    "cuda": {64: 64, 256: 32, 512: 16, 1024: 4, 2048: 2},
}
CUDA_COMPILE_SIZE = 512  # torch.compile variants at one size (compiling costs minutes)
PATHS = ("baseline_network", "baseline_full", "network", "full", "stream")


@dataclass(frozen=True)
class Variant:
    """One way of running the network; ``peak`` names the dtype of the ceiling it is held to."""

    speed: SpeedOptions
    amp: bool
    peak: str


CPU_VARIANTS = {
    "fp32": Variant(SpeedOptions(), False, "float32"),
    "channels_last": Variant(SpeedOptions(channels_last=True), False, "float32"),
    "bf16": Variant(SpeedOptions(autocast_cpu=True), True, "bfloat16"),
    "fast": Variant(SpeedOptions.fast(torch.device("cpu")), True, "bfloat16"),
}
CUDA_VARIANTS = {
    # cuDNN runs fp32 convolutions on TF32 tensor cores by default: fp32 is held to TF32.
    "fp32": Variant(SpeedOptions(), False, "tf32"),
    "bf16": Variant(SpeedOptions(), True, "bfloat16"),
    "fast": Variant(SpeedOptions.fast(torch.device("cuda")), True, "bfloat16"),
    "fast_unpinned": Variant(SpeedOptions(channels_last=True), True, "bfloat16"),
    "fp16_channels_last": Variant(
        SpeedOptions(channels_last=True, amp_dtype="float16", pinned_copy=True), True, "float16"
    ),
    "compile": Variant(
        SpeedOptions(channels_last=True, pinned_copy=True, compile_mode="default"), True, "bfloat16"
    ),
    "cudagraphs": Variant(
        SpeedOptions(channels_last=True, pinned_copy=True, compile_mode="reduce-overhead"),
        True,
        "bfloat16",
    ),
}


def _baseline_variant(device: torch.device) -> Variant:
    return Variant(SpeedOptions(), False, "tf32" if device.type == "cuda" else "float32")


def _rounds(device: str, size: int) -> tuple[int, int]:
    """(rounds, warm-up rounds) of pedantic mode: few on CPU, where a 512² frame takes seconds."""
    if device == "cpu":
        return {64: (3, 1), 256: (2, 1)}.get(size, (1, 0))
    return (20, 3) if size <= 512 else (5, 2)


def _variants(path: str, device: str, size: int) -> list[str]:
    if path.startswith("baseline"):
        return ["fp32_uncached"]
    if device == "cpu":
        if path == "network":
            return list(CPU_VARIANTS) if size == 64 else ["fp32", "fast"]
        return ["fast"]
    compiled = ["compile", "cudagraphs"] if size == CUDA_COMPILE_SIZE else []
    if path == "network":
        return ["fp32", "bf16", "fast", "fp16_channels_last", *compiled]
    if path == "full":
        return ["fast", "fast_unpinned", *compiled[1:]]
    return ["fast", *compiled[1:]]


def _cases() -> list[Any]:
    """Params (device, network, size, path, variant) grouped by (device, network, size), the two
    baselines first: on a shared CPU the load drifts over minutes, so each ratio is taken between
    figures measured close together in time.
    """
    out = []
    for device in ("cpu", "cuda"):
        for net in NETWORKS:
            for size in SIZES:
                marks = list(CUDA.marks) if device == "cuda" else []
                if size >= BIG:
                    marks.append(pytest.mark.slow)
                    if device == "cpu":
                        reason = f"set {SLOW_ENV}=1"
                        marks.append(pytest.mark.skipif(not slow_enabled(), reason=reason))
                for path in PATHS:
                    for variant in _variants(path, device, size):
                        ident = f"{device}-{net}-{size}px-{path}-{variant}"
                        params = (device, net, size, path, variant)
                        out.append(pytest.param(*params, marks=marks, id=ident))
    return out


# --------------------------------------------------------------------------- the paths
def _neighbours(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of t−1 and t+1 within a batch, the edge frame replicated (as offline does)."""
    idx = torch.arange(n)
    return (idx - 1).clamp(0, n - 1), (idx + 1).clamp(0, n - 1)


def baseline_windows(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) windows (t−1, t, t+1) from scaled inputs (B, 1, H, W)."""
    prev, nxt = _neighbours(x.shape[0])
    frames = x[:, 0]
    return torch.stack([frames[prev], frames, frames[nxt]], dim=1)


def baseline_localize(loc: Localizer, adu: np.ndarray, shape: tuple[int, int]) -> Localizations:
    """DECODE's published inference: photons → windows → ``net.forward`` (fp32) → localize."""
    x = loc.to_input(adu, CAM)
    with torch.no_grad():
        out = loc.net(baseline_windows(x))[..., : shape[0], : shape[1]]
    return loc.localize(out, np.arange(len(adu)))


def _path_fn(path: str, loc: Localizer, adu: np.ndarray, locs: list[int]) -> Callable[[], Any]:
    """What one round runs; ``locs`` collects the localization count of full-path rounds."""
    n, size = len(adu), adu.shape[1]
    if path == "baseline_full":

        def baseline_full() -> None:
            locs.append(len(baseline_localize(loc, adu, (size, size))))

        return baseline_full
    if path == "baseline_network":
        windows = baseline_windows(loc.to_input(adu, CAM))
        return torch.no_grad()(lambda: loc.net(windows))
    if path == "network":
        x = loc.to_input(adu, CAM)
        prev, nxt = _neighbours(n)

        def network() -> torch.Tensor:
            feats = loc.features(x)
            out: torch.Tensor = loc.outputs(feats[prev], feats, feats[nxt], (size, size))
            return out

        return network
    if path == "full":

        def full() -> None:
            locs.append(len(localize_movie(loc, adu, CAM, batch_size=n)))

        return full
    return _stream_fn(loc, adu)


def _stream_fn(loc: Localizer, adu: np.ndarray) -> Callable[[], None]:
    """StreamProcessor in steady state: each call, B new frames in and B frames localized."""
    proc = StreamProcessor(loc)
    n, sent = len(adu), [0]

    def batch() -> None:
        first = sent[0]
        msgs: list[Message] = [FrameMsg(first + k, first + k, CAM, adu[k]) for k in range(n)]
        sent[0] += n
        emitted = len(proc.process(msgs).stats)
        if first > 0 and emitted != n:
            raise RuntimeError(f"the processor emitted {emitted} of {n} frames")

    batch()  # the first call only fills the ring (frame t is emitted when t+1 arrives)
    return batch


# --------------------------------------------------------------------------- reference figures
@pytest.mark.parametrize("op", ["matmul", "conv"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "tf32", "float16"])
@pytest.mark.parametrize("torch_device", DEVICES, indirect=True)
def test_peak(
    benchmark: Any, torch_device: torch.device, dtype: str, op: str, peaks: Peaks
) -> None:
    """The ceilings achieved FLOP/s are compared with (best of several runs).

    On CUDA, cuDNN runs float32 convolutions on TF32 tensor cores by default, so the float32 and
    tf32 conv ceilings are the same measurement twice.
    """
    if torch_device.type == "cpu" and dtype in ("tf32", "float16"):
        pytest.skip("CUDA only")
    gflop = benchmark.pedantic(peaks.get, args=(torch_device, dtype, op), rounds=1, iterations=1)
    describe(benchmark, torch_device, op=op, dtype=dtype, peak_gflop_per_s=round(gflop, 1))


@pytest.mark.parametrize("net_name", list(NETWORKS))
def test_flop_count(benchmark: Any, net_name: str) -> None:
    """Analytic FLOP/px of both stages; cross-checked against the traced conv shapes."""
    net = DecodeNet(NETWORKS[net_name], predict_z=False)
    flops = decode_flops(net)
    traced = benchmark.pedantic(traced_uncached_flop, args=(net, 64, 96), rounds=1, iterations=1)
    assert traced == pytest.approx(flops.uncached * 64 * 96, rel=1e-9)
    benchmark.extra_info.update(
        network=net_name,
        frame_unet_mflop_per_px=round(flops.frame_unet / 1e6, 4),
        context_mflop_per_px=round(flops.context / 1e6, 4),
        cached_mflop_per_px=round(flops.cached / 1e6, 4),
        uncached_mflop_per_px=round(flops.uncached / 1e6, 4),
    )


# --------------------------------------------------------------------------- throughput
@pytest.mark.parametrize(("device", "net_name", "size", "path", "variant"), _cases())
def test_inference(
    benchmark: Any,
    device: str,
    net_name: str,
    size: int,
    path: str,
    variant: str,
    base_movie: np.ndarray,
    baselines: Baselines,
    peaks: Peaks,
) -> None:
    """One path of one (device, network, size); see the module docstring."""
    dev = torch.device(device)
    n = BATCH[device][size]
    adu = movie_frames(base_movie, size, n)
    is_baseline = path.startswith("baseline")
    v = _baseline_variant(dev) if is_baseline else _variant(dev, variant)
    loc = make_localizer(net_name, dev, v.speed, v.amp)
    locs: list[int] = []
    fn = _path_fn(path, loc, adu, locs)
    rounds, warmup = _rounds(device, size)

    def timed() -> None:
        fn()
        sync(dev)

    benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup, iterations=1)

    fps = n / float(benchmark.stats.stats.median)  # median: some rounds are slow on a busy CPU
    flop = decode_flops(loc.net)
    per_px = flop.uncached if is_baseline else flop.cached
    gflop = per_px * size * size * fps / 1e9
    base_path = (
        path if is_baseline else ("baseline_network" if path == "network" else "baseline_full")
    )
    key = (device, net_name, size, base_path)
    inline = False
    if is_baseline:
        baselines.fps[key] = fps
    elif key not in baselines.fps:  # its baseline case was deselected: measure it now
        base_fn = _path_fn(base_path, make_localizer(net_name, dev, amp=False), adu, [])
        baselines.fps[key] = n / best_seconds(base_fn, dev, rounds=1)
        inline = True
    describe(
        benchmark,
        dev,
        network=net_name,
        filters=NETWORKS[net_name],
        size_px=size,
        frames_per_call=n,
        path=path,
        variant=variant,
        frames_per_s=round(fps, 3),
        frames_per_s_best=round(n / float(benchmark.stats.stats.min), 3),
        mpx_per_s=round(fps * size * size / 1e6, 4),
        flop_per_frame_g=round(per_px * size * size / 1e9, 3),
        **peaks.report(dev, v.peak, gflop),
        baseline=base_path,
        baseline_frames_per_s=round(baselines.fps[key], 3),
        ratio_to_baseline=round(fps / baselines.fps[key], 3),
        baseline_measured_inline=inline,
    )
    if locs:
        benchmark.extra_info["locs_per_frame"] = round(locs[-1] / n, 1)
    benchmark.group = f"{device} {net_name} {size}px"


def _variant(device: torch.device, name: str) -> Variant:
    return (CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS)[name]


# --------------------------------------------------------------------------- latency
LATENCY_CASES = [
    # (device, network, size, camera Hz, frames, max batch)
    pytest.param("cpu", "lite", 64, 25.0, 100, 8, id="cpu-lite-64px-25Hz"),
    pytest.param("cpu", "lite", 64, 50.0, 150, 8, id="cpu-lite-64px-50Hz"),  # the demo camera
    pytest.param("cpu", "paper", 64, 10.0, 40, 8, id="cpu-paper-64px-10Hz"),
    pytest.param(
        "cuda", "lite", 512, 1000.0, 3000, 32, marks=CUDA.marks, id="cuda-lite-512px-1kHz"
    ),
    pytest.param("cuda", "paper", 512, 70.0, 350, 32, marks=CUDA.marks, id="cuda-paper-512px-70Hz"),
    pytest.param(
        "cuda", "paper", 256, 1000.0, 3000, 32, marks=CUDA.marks, id="cuda-paper-256px-1kHz"
    ),
]


@pytest.mark.parametrize(
    ("device", "net_name", "size", "camera_hz", "n_frames", "max_batch"), LATENCY_CASES
)
def test_latency(
    benchmark: Any,
    device: str,
    net_name: str,
    size: int,
    camera_hz: float,
    n_frames: int,
    max_batch: int,
    base_movie: np.ndarray,
) -> None:
    """Frames arrive at ``camera_hz``; each call takes whatever has arrived, ≤ ``max_batch``.

    That is the worker's policy: single frames while it keeps up, batches only when behind.
    Latency of frame t: from its arrival to its localizations as NumPy. It includes waiting for
    frame t+1 (temporal context), so it cannot be below one frame interval.
    """
    dev = torch.device(device)
    loc = make_localizer(net_name, dev, SpeedOptions.fast(dev))
    adu = movie_frames(base_movie, size, 8)
    interval_s = 1.0 / camera_hz
    for b in range(1, max_batch + 2):  # every batch size once: kernels and oneDNN primitives
        StreamProcessor(loc).process([FrameMsg(i, i, CAM, adu[i % 8]) for i in range(b)])
    latencies_ms: list[float] = []
    batches: list[int] = []

    def acquisition() -> float:
        proc = StreamProcessor(loc)
        start = time.perf_counter()
        sent = 0
        while sent < n_frames:
            arrived = min(n_frames, int((time.perf_counter() - start) / interval_s) + 1)
            if arrived <= sent:
                time.sleep(max(0.0, start + sent * interval_s - time.perf_counter()))
                continue
            take = min(arrived - sent, max_batch)
            msgs: list[Message] = [
                FrameMsg(i, int((start + i * interval_s) * 1e9), CAM, adu[i % 8])
                for i in range(sent, sent + take)
            ]
            sent += take
            if sent == n_frames:
                msgs.append(EosMsg(n_frames - 1))
            result = proc.process(msgs)
            now_ns = time.perf_counter() * 1e9
            latencies_ms.extend((now_ns - t) / 1e6 for t in result.timestamps_ns)
            batches.append(take)
        return time.perf_counter() - start

    elapsed = benchmark.pedantic(acquisition, rounds=1, iterations=1)
    lat = np.asarray(latencies_ms)
    assert len(lat) == n_frames
    describe(
        benchmark,
        dev,
        network=net_name,
        size_px=size,
        variant="fast",
        path="stream at camera rate",
        camera_hz=camera_hz,
        frames=n_frames,
        max_batch=max_batch,
        frame_interval_ms=round(1000 * interval_s, 3),
        latency_ms_p50=round(float(np.percentile(lat, 50)), 2),
        latency_ms_p99=round(float(np.percentile(lat, 99)), 2),
        latency_ms_max=round(float(lat.max()), 2),
        mean_batch=round(float(np.mean(batches)), 2),
        achieved_frames_per_s=round(n_frames / elapsed, 2),
        kept_up=bool(n_frames / elapsed >= 0.97 * camera_hz),
    )
    benchmark.group = f"{device} latency"


# --------------------------------------------------------------------------- the whole worker
WORKER_CASES = [
    # (device, network, size, frames): the targets are the CUDA 512² cases
    pytest.param("cpu", "lite", 64, 200, id="cpu-lite-64px"),
    pytest.param("cuda", "lite", 512, 5000, marks=CUDA.marks, id="cuda-lite-512px"),
    pytest.param("cuda", "paper", 512, 1000, marks=CUDA.marks, id="cuda-paper-512px"),
]


@pytest.mark.parametrize(("device", "net_name", "size", "n_frames"), WORKER_CASES)
def test_worker_zeromq(
    benchmark: Any,
    device: str,
    net_name: str,
    size: int,
    n_frames: int,
    base_movie: np.ndarray,
    baselines: Baselines,
    tmp_path: Path,
) -> None:
    """End to end: a source pushes frames as fast as the worker takes them (lossless) over tcp
    loopback; the worker (its own thread) localizes, writes CSV + HDF5 and publishes. Sustained
    frames/s = frames / wall time from the first frame sent to the worker's end of stream.
    """
    dev = torch.device(device)
    loc = make_localizer(net_name, dev, SpeedOptions.fast(dev))
    adu = movie_frames(base_movie, size, 8)
    for b in (1, 2, 32, 33):  # behind a lossless source the worker drains 32 frames a batch
        StreamProcessor(loc).process([FrameMsg(i, i, CAM, adu[i % 8]) for i in range(b)])
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    runs: list[WorkerSummary] = []

    def one_run() -> None:
        pusher = FramePusher(context, "tcp://127.0.0.1:*", lossless=True, sndhwm=64)
        puller = FramePuller(context, pusher.endpoint, rcvhwm=64)
        publisher = ResultPublisher(context, "tcp://127.0.0.1:*")
        run_dir = tmp_path / f"run{len(runs)}"
        worker = InferenceWorker(loc, puller, publisher, run_dir, max_batch=32)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            for i in range(n_frames):
                pusher.send_frame(adu[i % 8], index=i, timestamp_ns=time.time_ns(), camera=CAM)
            pusher.send_eos(n_frames - 1, timeout_ms=None)
            thread.join(timeout=600)
        finally:
            worker.stop()
            thread.join(timeout=10)
            for s in (pusher, puller, publisher):
                s.close()
        runs.append(worker.summary)

    try:
        rounds, warmup = (1, 0) if device == "cpu" else (3, 1)
        benchmark.pedantic(one_run, rounds=rounds, warmup_rounds=warmup, iterations=1)
    finally:
        context.destroy(linger=0)
    summary = runs[-1]
    assert summary.frames_processed == n_frames
    fps = n_frames / float(benchmark.stats.stats.median)
    key = (device, net_name, size, "baseline_full")
    inline = key not in baselines.fps
    if inline:
        n = BATCH[device][size]
        base_loc = make_localizer(net_name, dev, amp=False)
        base_fn = _path_fn("baseline_full", base_loc, movie_frames(base_movie, size, n), [])
        baselines.fps[key] = n / best_seconds(base_fn, dev, rounds=1)
    report = summary.to_dict()
    describe(
        benchmark,
        dev,
        network=net_name,
        size_px=size,
        variant="fast",
        path="worker over ZeroMQ",
        frames=n_frames,
        frames_per_s=round(fps, 2),
        mpx_per_s=round(fps * size * size / 1e6, 3),
        baseline="baseline_full",
        baseline_frames_per_s=round(baselines.fps[key], 3),
        ratio_to_baseline=round(fps / baselines.fps[key], 3),
        baseline_measured_inline=inline,
        batches=summary.batches,
        mean_batch=round(n_frames / max(1, summary.batches), 2),
        queueing_latency_ms_p50=round(float(str(report["latency_ms_p50"])), 1),
        queueing_latency_ms_p99=round(float(str(report["latency_ms_p99"])), 1),
        locs_per_frame=round(summary.localizations / n_frames, 1),
    )
    benchmark.group = f"{device} worker"
