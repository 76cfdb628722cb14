"""Model compatibility: every difference between a model card and a run is named, with a fix."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from live_decode.config import Config, config_from_dict, load_config
from live_decode.errors import ModelCardError
from live_decode.inference.compat import check_compatible, check_frame, refuse
from live_decode.model.card import ModelCard, read_card
from live_decode.model.scaling import Scaling
from live_decode.sources.base import camera_from_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"
BUNDLED_MODEL = REPO / "live_decode" / "bundled" / "demo_lite.pt"


def card_for(cfg: Config, name: str = "tiny") -> ModelCard:
    """A card as ``live-decode train`` would write for ``cfg`` (no network needed)."""
    return ModelCard(
        name=name,
        config=cfg.model_dump(mode="json"),
        scaling=Scaling.from_config(cfg).to_dict(),
        filters=4,
        temporal_context=cfg.model.temporal_context,
        n_parameters=0,
    )


@pytest.fixture(scope="module")
def bundled() -> ModelCard:
    return read_card(BUNDLED_MODEL)


def whats(card: ModelCard, cfg: Config, name: str | None = None) -> dict[str, str]:
    found = check_compatible(card, camera_from_config(cfg), cfg, config_name=name)
    return {m.what: str(m) for m in found}


def demo_with(**sections: Any) -> Config:
    data = load_config(CONFIGS / "demo.yaml").model_dump(mode="json")
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    return config_from_dict(data)


def test_the_card_is_read_and_checked_without_torch(bundled: ModelCard) -> None:
    assert bundled.name == "demo_lite"
    # A supervisor checks the model against the camera before anything heavy is loaded.
    code = (
        "import sys; from live_decode.model.card import read_card; "
        "from live_decode.inference.compat import check_compatible; "
        f"read_card({str(BUNDLED_MODEL)!r}); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_demo_config_fits_the_bundled_model(bundled: ModelCard) -> None:
    assert whats(bundled, load_config(CONFIGS / "demo.yaml")) == {}
    assert whats(bundled, load_config(CONFIGS / "mm_sim.yaml")) == {}


def test_a_3d_config_is_refused_by_the_2d_model(bundled: ModelCard) -> None:
    cfg = load_config(CONFIGS / "astig_emccd.yaml")
    found = whats(bundled, cfg, "configs/astig_emccd.yaml")
    assert set(found) == {"2-D vs 3-D", "PSF kind"}
    assert "reports every z as 0" in found["2-D vs 3-D"]
    assert "3-D data (z -750..750 nm)" in found["2-D vs 3-D"]
    assert "astigmatic PSF" in found["PSF kind"]
    assert "2-D Gaussian PSF (σ 130 nm)" in found["PSF kind"]
    assert "live-decode train configs/astig_emccd.yaml" in found["PSF kind"]
    with pytest.raises(ModelCardError) as info:
        refuse(bundled, check_compatible(bundled, camera_from_config(cfg), cfg), override=False)
    assert "--ignore-model-mismatch" in str(info.value)
    assert "2-D vs 3-D" in str(info.value) and "PSF kind" in str(info.value)


def test_a_2d_config_is_refused_by_a_3d_model() -> None:
    astig = card_for(load_config(CONFIGS / "astig_emccd.yaml"), "astig")
    found = whats(astig, load_config(CONFIGS / "demo.yaml"))
    assert {"2-D vs 3-D", "PSF kind"} <= set(found)
    assert "invents z" in found["2-D vs 3-D"] and "2-D data (z = 0)" in found["2-D vs 3-D"]
    assert whats(astig, load_config(CONFIGS / "astig_emccd.yaml")) == {}


@pytest.mark.parametrize(
    ("sections", "what", "says"),
    [
        ({"camera": {"pixel_size_nm": 160}}, "pixel size", "100 nm pixels, this run has 160 nm"),
        (
            {"camera": {"kind": "scmos", "em_gain": 1, "read_noise_e": 1.6}},
            "camera type",
            "an EMCCD (EM gain 300), this run has a camera without EM gain",
        ),
        ({"camera": {"em_gain": 10}}, "read noise", "photons rms"),
        ({"psf": {"sigma_nm": 180}}, "PSF shape", "σ 180 nm"),
        ({"model": {"temporal_context": False}}, "temporal context", "single frames"),
    ],
)
def test_each_difference_is_named_with_both_values_and_a_fix(
    bundled: ModelCard, sections: dict[str, Any], what: str, says: str
) -> None:
    found = whats(bundled, demo_with(**sections), "my.yaml")
    assert what in found, found
    assert says in found[what]
    assert "my.yaml" in found[what] or "camera" in found[what]


def test_small_differences_pass(bundled: ModelCard) -> None:
    cfg = demo_with(camera={"pixel_size_nm": 103, "em_gain": 200}, psf={"sigma_nm": 140})
    assert whats(bundled, cfg) == {}


def test_z_range_beyond_the_trained_one() -> None:
    astig = load_config(CONFIGS / "astig_emccd.yaml")
    card = card_for(astig)
    data = astig.model_dump(mode="json")
    data["emitters"]["z_range_nm"] = [-1500, 1500]
    found = whats(card, config_from_dict(data))
    assert set(found) == {"z range"} and "z -1500..1500 nm" in found["z range"]


def test_scmos_config_needs_its_own_model(bundled: ModelCard) -> None:
    found = whats(bundled, load_config(CONFIGS / "scmos_2d.yaml"), "configs/scmos_2d.yaml")
    assert {"camera type", "pixel size"} <= set(found)


def test_without_a_config_only_the_camera_is_checked(bundled: ModelCard) -> None:
    astig = load_config(CONFIGS / "astig_emccd.yaml")
    assert check_compatible(bundled, camera_from_config(astig)) == []


def test_frames_too_small_and_implausible_pixels(bundled: ModelCard) -> None:
    cam = camera_from_config(load_config(CONFIGS / "demo.yaml"))
    found = check_compatible(bundled, cam, frame_shape_px=(4, 64))
    assert [m.what for m in found] == ["frame size"] and "4×64 px" in str(found[0])
    assert check_frame(bundled, cam, np.full((64, 64), 200, np.uint16)) == []
    wrong_offset = dataclasses.replace(cam, baseline_adu=1000.0)  # frames at 100 ADU
    dark = check_frame(bundled, wrong_offset, np.full((64, 64), 100, np.uint16))
    assert [m.what for m in dark] == ["baseline"]
    bright = check_frame(bundled, cam, np.full((64, 64), 60000, np.uint16))
    assert [m.what for m in bright] == ["gain"]


def test_override_returns_the_mismatches_as_warnings(bundled: ModelCard) -> None:
    cfg = load_config(CONFIGS / "astig_emccd.yaml")
    found = check_compatible(bundled, camera_from_config(cfg), cfg)
    warnings = refuse(bundled, found, override=True)
    assert warnings == [str(m) for m in found] and len(warnings) == 2
