"""Movies: calibration read from the file (OME, ImageJ, Micro-Manager), our writer and recorder."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_decode.config import config_from_dict
from live_decode.errors import ConfigError
from live_decode.io.movie import CHUNK_FRAMES, MovieRecorder, TiffMovie, write_movie
from live_decode.messages import CameraMeta, GapMsg
from live_decode.sources.replay import DEMO_LABEL, ReplaySource, explicit_camera_keys

MOVIES_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "movies"
DEMO_CAM = CameraMeta(
    pixel_size_nm=100.0, baseline_adu=100.0, e_per_adu=45.0, em_gain=300.0, qe=0.9, exposure_ms=30
)
RNG = np.random.default_rng(0)


def noise(n: int = 6, h: int = 16, w: int = 20) -> np.ndarray:
    return RNG.integers(100, 400, size=(n, h, w), dtype=np.uint16)


def replay(path: Path, **kw: object) -> ReplaySource:
    return ReplaySource([path], DEMO_CAM, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "unit", "nm"), [(0.16, "µm", 160.0), (107.0, "nm", 107.0), (0.065, None, 65.0)]
)
def test_pixel_size_from_ome_physical_size_x(
    tmp_path: Path, size: float, unit: str | None, nm: float
) -> None:
    path = tmp_path / "m.ome.tif"
    meta: dict[str, object] = {
        "axes": "TYX",
        "PhysicalSizeX": size,
        "PhysicalSizeY": size,
        "TimeIncrement": 0.05,  # OME's default unit: seconds
    }
    if unit is not None:
        meta["PhysicalSizeXUnit"] = unit
    tifffile.imwrite(path, noise(), ome=True, metadata=meta)
    src = replay(path)
    try:
        assert src.camera.pixel_size_nm == pytest.approx(nm)
        assert src.calibration.sources["pixel_size_nm"] == "file:OME PhysicalSizeX"
        assert src.calibration.sources["em_gain"] == DEMO_LABEL  # not in the file
        assert src.frame_interval_ms == pytest.approx(50.0)  # camera-paced replay
    finally:
        src.close()


def test_pixel_size_from_an_imagej_tiff(tmp_path: Path) -> None:
    path = tmp_path / "ij.tif"
    px_um = 0.117
    tifffile.imwrite(
        path,
        noise(),
        imagej=True,
        resolution=(1 / px_um, 1 / px_um),
        metadata={"unit": "um", "finterval": 0.02},
    )
    src = replay(path)
    try:
        assert src.camera.pixel_size_nm == pytest.approx(117.0, rel=1e-4)
        assert src.calibration.sources["pixel_size_nm"].startswith("file:ImageJ resolution")
        assert src.frame_interval_ms == pytest.approx(20.0)
    finally:
        src.close()


def test_pixel_size_and_exposure_from_micro_manager_metadata(tmp_path: Path) -> None:
    path = tmp_path / "mm.tif"
    tag = json.dumps(
        {
            "PixelSizeUm": 0.13,
            "Exposure-ms": 12.5,
            "Camera": "EMCCD",
            "EMCCD-Offset": "480",
            "EMCCD-EMGain": "0",  # EM gain switched off
            "EMCCD-Gain": "2",  # a setting, not a calibration: not read
        }
    )
    with tifffile.TiffWriter(path) as tif:
        for frame in noise(3):
            tif.write(frame, extratags=[(51123, "s", 0, tag, True)], contiguous=False)
    src = replay(path)
    try:
        assert src.camera.pixel_size_nm == pytest.approx(130.0)
        assert src.camera.exposure_ms == pytest.approx(12.5)
        assert src.calibration.sources["pixel_size_nm"] == "file:Micro-Manager PixelSizeUm"
        assert src.camera.baseline_adu == 480.0 and src.camera.em_gain == 1.0
        assert src.calibration.sources["baseline_adu"] == "file:Micro-Manager EMCCD-Offset"
        assert src.calibration.sources["e_per_adu"] == DEMO_LABEL
    finally:
        src.close()


def test_the_public_imagej_movie_says_100_nm() -> None:
    movie = MOVIES_DIR / "testStack_SimulatedMicrotubules.tif"
    if not movie.is_file():
        pytest.skip(f"{movie} not found (../shared is not checked out)")
    src = replay(movie)
    try:
        assert src.camera.pixel_size_nm == pytest.approx(100.0)
        assert src.calibration.sources["pixel_size_nm"] == "file:ImageJ resolution (10 px/µm)"
    finally:
        src.close()


def test_a_config_that_contradicts_the_file_is_refused_with_both_values(tmp_path: Path) -> None:
    path = tmp_path / "m.ome.tif"
    tifffile.imwrite(path, noise(), ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 0.16})
    cfg = config_from_dict({"camera": {"pixel_size_nm": 100, "qe": 0.9}})
    keys = explicit_camera_keys(cfg, "lab.yaml")
    assert keys == {
        "pixel_size_nm": "config lab.yaml camera.pixel_size_nm",
        "qe": "config lab.yaml camera.qe",
    }
    with pytest.raises(ConfigError) as info:
        replay(path, config_keys=keys)
    text = str(info.value)
    assert "the file says 160 (file:OME PhysicalSizeX)" in text
    assert "the config says 100 (config lab.yaml camera.pixel_size_nm)" in text
    # A config that agrees (or leaves the value out) is fine; its own values are labelled.
    agree = explicit_camera_keys(config_from_dict({"camera": {"pixel_size_nm": 160}}), "a.yaml")
    src = ReplaySource([path], CameraMeta(**{**DEMO_CAM.__dict__, "pixel_size_nm": 160.0}),
                       config_keys=agree, default_label="config default")  # fmt: skip
    assert src.calibration.sources["qe"] == "config default"
    src.close()


def test_a_file_without_metadata_says_loudly_which_camera_it_assumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bare.tif"
    tifffile.imwrite(path, noise())
    with caplog.at_level(logging.WARNING, logger="live_decode.sources.replay"):
        src = replay(path)
    src.close()
    assert set(src.calibration.sources.values()) == {DEMO_LABEL}
    assert "no --config" in caplog.text and "em_gain 300" in caplog.text


def test_written_movie_reads_back_with_its_camera(tmp_path: Path) -> None:
    path = tmp_path / "movie.ome.tif"
    frames = noise(5)
    camera = {**{k: float(v) for k, v in DEMO_CAM.__dict__.items() if k != "extra"}}
    camera["pixel_size_nm"] = 160.0
    write_movie(path, iter(frames), 5, (16, 20), camera, frame_interval_ms=25.0)
    src = replay(path)
    try:
        assert src.camera.pixel_size_nm == 160.0 and src.frame_interval_ms == 25.0
        assert src.calibration.sources["em_gain"] == "file:live_decode camera metadata"
        got = np.stack([f.pixels for f in iter(src.read, None)])
    finally:
        src.close()
    np.testing.assert_array_equal(got, frames)


def test_recorder_keeps_frames_camera_and_gaps_and_maps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "raw.ome.tif"
    frames = noise(6)
    indices = [2, 3, 4, 8, 9, 10]  # frames 5..7 were lost upstream
    camera = {"pixel_size_nm": 120.0, "baseline_adu": 400.0, "em_gain": 1.0, "kind": "scmos"}
    rec = MovieRecorder(path, camera, frame_interval_ms=10.0)
    for index, frame in zip(indices, frames, strict=True):
        rec.append(frame, index)
    rec.close()
    movie = TiffMovie(path)
    assert movie.mapped  # frames are views of the mapped file (chunks of pages)
    assert movie.frame_runs == [(2, 3), (8, 3)]
    movie.close()
    src = replay(path)
    try:
        got, gaps = [], []
        while (f := src.read()) is not None:
            gaps += src.take_gaps()
            got.append((f.index, f.pixels.copy()))
    finally:
        src.close()
    assert [i for i, _ in got] == indices
    assert gaps == [GapMsg(first=5, count=3)]
    np.testing.assert_array_equal(np.stack([p for _, p in got]), frames)
    assert src.camera.pixel_size_nm == 120.0 and src.camera.baseline_adu == 400.0


def test_a_recording_cut_short_is_still_a_readable_tiff(tmp_path: Path) -> None:
    path = tmp_path / "raw.ome.tif"
    rec = MovieRecorder(path, {"pixel_size_nm": 100.0}, frame_interval_ms=10.0)
    frames = noise(CHUNK_FRAMES + 4)
    for i, frame in enumerate(frames):
        rec.append(frame, i)
    assert rec._tif is not None
    rec._tif.close()  # what a killed process leaves: pages, no OME-XML, the last chunk lost
    src = replay(path)
    try:
        assert src.n_frames == CHUNK_FRAMES
        np.testing.assert_array_equal(src.read().pixels, frames[0])  # type: ignore[union-attr]
    finally:
        src.close()
