"""``live-decode simulate`` end to end on a tiny run: files, their contents, and clean errors."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
import yaml

from live_decode.cli.main import main
from live_decode.config import config_from_dict, load_config
from live_decode.io.drift_csv import read_drift_csv
from live_decode.io.movie import CAMERA_NAMESPACE
from live_decode.io.thunderstorm import read_ground_truth_csv
from live_decode.simulation.microscope import SimulatedMicroscope

DEMO = Path(__file__).parents[3] / "configs" / "demo.yaml"
OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"
FRAMES, FOV = 10, 32


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    """The demo config on a 32×32 px field of view."""
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["microscope"]["fov_px"] = [FOV, FOV]
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _simulate(config: Path, out: Path, *extra: str) -> int:
    argv = ["simulate", str(config), "--frames", str(FRAMES), "--out", str(out), *extra]
    return main(argv)


def test_simulate_writes_movie_truth_and_preview(small_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _simulate(small_config, out, "--seed", "5", "--laser-mw", "10") == 0

    # The same acquisition, simulated here: the files must hold exactly it.
    data = load_config(small_config).model_dump()
    data["microscope"]["seed"] = 5
    data["microscope"]["laser"]["power_mw"] = 10.0
    microscope = SimulatedMicroscope(config_from_dict(data))
    expected = [microscope.next_frame() for _ in range(FRAMES)]

    with tifffile.TiffFile(out / "movie.ome.tif") as tif:
        assert tif.is_ome
        series = tif.series[0]
        assert series.shape == (FRAMES, FOV, FOV)
        assert series.dtype == np.uint16
        assert series.axes == "TYX"
        movie = series.asarray()
        assert tif.ome_metadata is not None
        ome = ET.fromstring(tif.ome_metadata)
    np.testing.assert_array_equal(movie, np.stack([f.adu for f in expected]))

    pixels = ome.find(f"{OME}Image/{OME}Pixels")
    assert pixels is not None
    assert float(pixels.attrib["PhysicalSizeX"]) == pytest.approx(0.1)
    assert pixels.attrib["PhysicalSizeXUnit"] == "µm"
    interval = load_config(DEMO).microscope.frame_interval_ms
    assert float(pixels.attrib["TimeIncrement"]) == pytest.approx(interval)
    annotations = {
        a.attrib.get("Namespace"): {m.attrib["K"]: m.text for m in a.iter(f"{OME}M")}
        for a in ome.iter(f"{OME}MapAnnotation")
    }
    camera = microscope.camera_metadata()
    assert annotations[CAMERA_NAMESPACE] == {k: str(v) for k, v in camera.items()}
    description = ome.find(f"{OME}Image/{OME}Description")
    assert description is not None and description.text is not None
    meta = json.loads(description.text)["live_decode"]
    assert meta["camera"] == camera
    assert meta["laser_mw"] == 10.0
    assert meta["config"]["microscope"]["seed"] == 5

    truth = read_ground_truth_csv(out / "ground_truth.csv")
    rows = np.concatenate([f.truth for f in expected])
    assert len(truth) == len(rows) > 0
    np.testing.assert_array_equal(truth["frame"], rows["frame"])  # 0-based again after reading
    np.testing.assert_array_equal(truth["id"], rows["id"])
    for col in ("x_nm", "y_nm", "z_nm", "photons"):
        np.testing.assert_allclose(truth[col], rows[col], rtol=1e-6, atol=1e-3)
    header = (out / "ground_truth.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == '"id","frame","x [nm]","y [nm]","z [nm]","intensity [photon]"'
    first_row = (out / "ground_truth.csv").read_text(encoding="utf-8").splitlines()[1]
    assert first_row.split(",")[1] == "1"  # ThunderSTORM frames are 1-based

    png = (out / "preview.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_existing_output_is_kept_unless_overwrite(
    small_config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _simulate(small_config, out) == 0
    before = (out / "movie.ome.tif").read_bytes()
    assert _simulate(small_config, out, "--seed", "9") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "movie.ome.tif").read_bytes() == before
    assert _simulate(small_config, out, "--seed", "9", "--overwrite") == 0
    assert (out / "movie.ome.tif").read_bytes() != before


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("camera:\n  em_gian: 300\n", (), "camera.em_gian: unknown key"),
        ("", ("--laser-mw", "500"), "power_mw exceeds max_power_mw"),
        ("microscope: [1, 2\n", (), "not valid YAML"),
    ],
    ids=["typo", "laser-too-high", "bad-yaml"],
)
def test_bad_input_is_a_clean_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    extra: tuple[str, ...],
    message: str,
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text, encoding="utf-8")
    assert _simulate(config, tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "movie.ome.tif").exists()


def test_missing_config_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _simulate(tmp_path / "nope.yaml", tmp_path / "run") == 2
    assert "config file not found" in capsys.readouterr().err


def test_frames_must_be_positive(small_config: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", str(small_config), "--frames", "0", "--out", str(tmp_path)])
    assert info.value.code == 2


def test_simulate_with_stage_drift_writes_the_true_drift(tmp_path: Path) -> None:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["microscope"]["fov_px"] = [FOV, FOV]
    data["microscope"]["drift"] = {"velocity_nm_per_frame": [2.0, -1.0]}
    config = tmp_path / "drift.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "run"
    assert _simulate(config, out) == 0
    drift = read_drift_csv(out / "ground_truth_drift.csv")
    assert drift["frame"].tolist() == list(range(FRAMES))
    np.testing.assert_allclose(drift["dx_nm"], 2.0 * np.arange(FRAMES))
    np.testing.assert_allclose(drift["dy_nm"], -1.0 * np.arange(FRAMES))
    # Without drift no such file.
    assert _simulate(_plain_small(tmp_path), tmp_path / "plain") == 0
    assert not (tmp_path / "plain" / "ground_truth_drift.csv").exists()


def _plain_small(tmp_path: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["microscope"]["fov_px"] = [FOV, FOV]
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
