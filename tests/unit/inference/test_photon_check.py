"""The model card's photon check: a camera calibration whose gain is wrong is refused.

The median pixel alone let a 3× wrong gain through (the background came out 3× too bright, still
within the card's range); the background's noise against its level does not.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tifffile
import torch

from live_decode.cli.main import main
from live_decode.config import Config, config_from_dict, load_config
from live_decode.inference.compat import check_frame
from live_decode.inference.photon_stats import photon_statistics
from live_decode.model.card import ModelCard, read_card
from live_decode.model.checkpoint import bundled_model_path
from live_decode.model.scaling import Scaling
from live_decode.simulation.microscope import SimulatedMicroscope
from live_decode.sources.base import camera_from_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


@pytest.fixture(scope="module")
def bundled() -> ModelCard:
    return read_card(bundled_model_path())


def card_for(cfg: Config) -> ModelCard:
    """A card as ``live-decode train`` would write for ``cfg`` (no network needed)."""
    return ModelCard(
        name="tiny",
        config=cfg.model_dump(mode="json"),
        scaling=Scaling.from_config(cfg).to_dict(),
        filters=4,
        temporal_context=cfg.model.temporal_context,
        n_parameters=0,
    )


def frames_of(cfg: Config, n: int) -> npt.NDArray[np.uint16]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mic = SimulatedMicroscope(cfg)
        return np.stack([mic.next_frame().adu for _ in range(n)]).astype(np.uint16)
    finally:
        torch.set_num_threads(threads)


def demo_camera_at(e_per_adu: float) -> Config:
    """The demo setup recorded with another conversion gain (the card still says 45 e⁻/ADU)."""
    data = load_config(CONFIGS / "demo.yaml").model_dump(mode="json")
    data["camera"]["e_per_adu"] = e_per_adu
    return config_from_dict(data)


@pytest.mark.parametrize("name", ["demo.yaml", "scmos_2d.yaml", "astig_emccd.yaml"])
def test_right_calibrations_pass(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    card, camera = card_for(cfg), camera_from_config(cfg)
    for frame in frames_of(cfg, 6):
        assert check_frame(card, camera, frame) == []
        assert photon_statistics(camera, frame).gain_ratio == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize("factor", [3.0, 1.0 / 3.0])
def test_a_3x_wrong_gain_is_refused_with_both_numbers(bundled: ModelCard, factor: float) -> None:
    """Frames with 3× (or ⅓×) the ADU per photon the card's camera has, converted with it."""
    card_camera = camera_from_config(bundled.parsed_config)  # 6 ADU/photon
    for frame in frames_of(demo_camera_at(45.0 / factor), 3):
        found = check_frame(bundled, card_camera, frame)
        assert [m.what for m in found] == ["photon statistics"], found
        text = str(found[0])
        assert "in use (6 ADU/photon" in text and "live-decode calibrate" in text
        implied = re.search(r"the pixels say ≈ ([\d.e+]+) ADU/photon", text)
        assert implied is not None, text
        assert float(implied.group(1)) / 6.0 == pytest.approx(factor, rel=0.2)


def test_uninformative_frames_are_not_judged(bundled: ModelCard) -> None:
    camera = camera_from_config(bundled.parsed_config)
    assert not photon_statistics(camera, np.full((64, 64), 400, np.uint16)).conclusive
    assert not photon_statistics(camera, np.full((6, 6), 400, np.uint16)).conclusive


def test_localize_without_metadata_names_the_card_camera_and_refuses_a_wrong_gain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain TIFF, no --config: the camera the model was trained for is used and said so;
    recorded at 3× its gain, the run is refused naming both figures and what to do."""
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, frames_of(demo_camera_at(15.0), 4))
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="live_decode"):
        code = main(["localize", str(movie), "--out", str(out), "--device", "cpu"])
    assert code == 2
    said = caplog.text
    assert "model card 'demo_lite' camera" in said and "live-decode calibrate" in said
    assert "camera calibration: " in said and "e_per_adu 45 e⁻/ADU" in said
    err = capsys.readouterr().err
    assert "photon statistics" in err and "ADU/photon" in err
    assert "--config setup/setup.yaml" in err and "--ignore-model-mismatch" in err
    sources = json.loads((out / "calibration.json").read_text())["camera"]
    assert sources["e_per_adu"]["source"] == "model card 'demo_lite' camera"
