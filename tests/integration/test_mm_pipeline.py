"""A real Micro-Manager core → SourceRunner → ZeroMQ (loopback tcp) → FramePuller."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from live_decode.config import load_config
from live_decode.messages import EosMsg, FrameMsg, GapMsg
from live_decode.sources.mm import MMSource
from live_decode.sources.runner import SourceRunner, SourceSummary
from live_decode.testing.mm import (
    DEMOCAM_MISSING,
    REPO_CONFIGS,
    BlankCamera,
    democam_available,
    open_blank_core,
)
from live_decode.transport.frames import FramePuller, FramePusher

Context = zmq.Context[zmq.Socket[bytes]]


@pytest.fixture
def ctx() -> Iterator[Context]:
    context: Context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _stream(
    ctx: Context, source: MMSource, n: int, pause_s: float = 0.0
) -> tuple[list[FrameMsg], list[GapMsg], SourceSummary]:
    """Run the source for ``n`` frames (``pause_s`` after each) and collect what arrives."""
    pusher = FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True, sndhwm=64)
    puller = FramePuller(ctx, pusher.endpoint, rcvhwm=64)
    runner = SourceRunner(
        source,
        pusher,
        realtime=False,
        max_frames=n,
        on_tick=(lambda _: time.sleep(pause_s)) if pause_s else None,
    )
    summaries: list[SourceSummary] = []
    thread = threading.Thread(target=lambda: summaries.append(runner.run()))
    thread.start()
    frames: list[FrameMsg] = []
    gaps: list[GapMsg] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = puller.recv(timeout_ms=200)
            if isinstance(msg, FrameMsg):
                frames.append(msg)
            elif isinstance(msg, GapMsg):
                gaps.append(msg)
            elif isinstance(msg, EosMsg):
                break
    finally:
        runner.stop()
        thread.join(10)
        pusher.close()
        puller.close()
        source.close()
    return frames, gaps, summaries[0]


@pytest.mark.parametrize("config", ["mm_sim.yaml", "mm_democam.yaml"])
def test_frames_and_camera_metadata_reach_the_worker_side(ctx: Context, config: str) -> None:
    if config == "mm_democam.yaml" and not democam_available():
        pytest.skip(DEMOCAM_MISSING)
    cfg = load_config(REPO_CONFIGS / config)
    cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"exposure_ms": 5})})
    source = MMSource.from_config(cfg)
    shape = source.shape_px
    frames, gaps, summary = _stream(ctx, source, 12)
    assert [f.index for f in frames] == list(range(12)) and not gaps
    assert summary.frames_sent == 12 and summary.eos_sent
    cam = frames[-1].camera
    assert cam.pixel_size_nm == pytest.approx(100.0)  # from the .cfg's pixel-size preset
    assert cam.exposure_ms == 5.0 and cam.extra["camera"] == "Camera"
    if config == "mm_sim.yaml":  # the simulated EMCCD reports its Offset and EMGain
        assert (cam.baseline_adu, cam.em_gain, cam.e_per_adu, cam.qe) == (100, 300, 45, 0.9)
    else:  # Offset 0 from the DemoCamera; e/ADU and QE from the YAML
        assert (cam.baseline_adu, cam.em_gain, cam.e_per_adu, cam.qe) == (0, 1, 1, 1)
    assert all(f.pixels.shape == shape and f.pixels.dtype.name == "uint16" for f in frames)


def test_frames_lost_in_the_circular_buffer_arrive_as_index_jumps(ctx: Context) -> None:
    """A slowed runner behind an 8-frame buffer: the worker sees every loss as a gap."""
    source = MMSource(open_blank_core(BlankCamera(shape=(256, 256), period_s=0.001)), buffer_mb=1)
    frames, _, summary = _stream(ctx, source, 20, pause_s=0.02)
    indices = [f.index for f in frames]
    jumps = [b - a - 1 for a, b in itertools.pairwise(indices) if b - a > 1]
    assert summary.frames_sent == len(frames) == 20
    assert jumps and sum(jumps) == source.frames_lost
