"""The FrameSource contract, run against every source: replay, simulated, Micro-Manager."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_decode.config import load_config
from live_decode.messages import FRAME_DTYPES, CameraMeta, FrameMsg, decode, encode
from live_decode.sources.base import FrameSource, SourceFrame
from live_decode.sources.mm import MMSource
from live_decode.sources.replay import ReplaySource
from live_decode.sources.simulated import SimulatedSource
from live_decode.testing.mm import (
    DEMOCAM_MISSING,
    REPO_CONFIGS,
    democam_available,
    open_sim_core,
    sim_config,
)

N_FRAMES = 6
CAM = CameraMeta(
    pixel_size_nm=100, baseline_adu=100, e_per_adu=45, em_gain=300, qe=0.9, exposure_ms=20
)
SOURCES = ["replay", "simulated", "mm_python_devices", "mm_cfg_file", "mm_democam"]


def _mm(source: MMSource) -> Iterator[MMSource]:
    """Yield the source; then stop it, unload every device explicitly, and close it."""
    try:
        yield source
    finally:
        if not source.closed:  # (the test may have closed it: then close() unloaded all)
            source.stop()
            source.core.unloadAllDevices()
            assert tuple(source.core.getLoadedDevices()) == ("Core",)
            source.close()


@pytest.fixture(params=SOURCES)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FrameSource]:
    kind: str = request.param
    if kind == "replay":
        movie = np.random.default_rng(0).integers(90, 400, (N_FRAMES + 2, 20, 24), np.uint16)
        tifffile.imwrite(tmp_path / "m.tif", movie)
        replay = ReplaySource([tmp_path / "m.tif"], CAM)
        yield replay
        replay.close()
    elif kind == "simulated":
        sim = SimulatedSource(sim_config(), max_frames=N_FRAMES + 2)
        yield sim
        sim.close()
    elif kind == "mm_python_devices":
        yield from _mm(MMSource(open_sim_core(sim_config()), buffer_mb=4))
    elif kind == "mm_cfg_file":
        cfg = load_config(REPO_CONFIGS / "mm_sim.yaml")
        cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"exposure_ms": 2})})
        yield from _mm(MMSource.from_config(cfg))
    else:
        if not democam_available():
            pytest.skip(DEMOCAM_MISSING)
        yield from _mm(MMSource.from_config(load_config(REPO_CONFIGS / "mm_democam.yaml")))


def _read(source: FrameSource, n: int) -> list[SourceFrame]:
    frames = []
    for _ in range(n):
        frame = source.read()
        assert frame is not None, "the source ended early"
        frames.append(frame)
    return frames


class TestFrameSourceContract:
    def test_is_a_frame_source(self, source: FrameSource) -> None:
        assert isinstance(source, FrameSource)
        assert isinstance(source.live, bool)
        assert source.frame_interval_ms > 0

    def test_camera_metadata_is_usable_for_photon_conversion(self, source: FrameSource) -> None:
        cam = source.camera
        assert isinstance(cam, CameraMeta)
        assert cam.pixel_size_nm > 0 and cam.e_per_adu > 0 and cam.em_gain >= 1
        assert 0 < cam.qe <= 1 and cam.baseline_adu >= 0 and cam.exposure_ms >= 0

    def test_frames_match_shape_and_dtype(self, source: FrameSource) -> None:
        for frame in _read(source, N_FRAMES):
            assert frame.pixels.shape == source.shape_px
            assert frame.pixels.dtype.name in FRAME_DTYPES

    def test_indices_increase_and_timestamps_do_not_go_back(self, source: FrameSource) -> None:
        frames = _read(source, N_FRAMES)
        indices = [f.index for f in frames]
        stamps = [f.timestamp_ns for f in frames]
        assert indices[0] >= 0 and all(b > a for a, b in itertools.pairwise(indices))
        assert all(isinstance(t, int) and t > 0 for t in stamps)
        assert stamps == sorted(stamps)

    def test_frames_survive_the_wire(self, source: FrameSource) -> None:
        frame = _read(source, 1)[0]
        msg = FrameMsg(
            index=frame.index,
            timestamp_ns=frame.timestamp_ns,
            camera=source.camera,
            pixels=frame.pixels,
        )
        back = decode([bytes(p) for p in encode(msg)])
        assert isinstance(back, FrameMsg)
        np.testing.assert_array_equal(back.pixels, frame.pixels)
        assert back.camera.pixel_size_nm == source.camera.pixel_size_nm

    def test_close_is_idempotent(self, source: FrameSource) -> None:
        _read(source, 2)
        source.close()
        source.close()
