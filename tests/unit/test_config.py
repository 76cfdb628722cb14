"""Config loading: every shipped file loads; typos, bad values and bad files give clear errors."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from live_decode.config import Config, SplinePsfConfig, load_config
from live_decode.errors import ConfigError

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def _write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_there_are_configs_to_check() -> None:
    assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.fov_area_um2 > 0


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ("camera:\n  pixel_sizenm: 100\n", "camera.pixel_sizenm"),
        ("microscope:\n  laser:\n    power_mW: 5\n", "microscope.laser.power_mW"),
        ("psf:\n  kind: gaussian\n  sigma: 120\n", "psf.sigma"),
        ("emiters:\n  density_per_um2: 1\n", "emiters"),
    ],
    ids=["camera", "nested", "tagged-union", "section"],
)
def test_a_typo_names_the_file_and_the_key_path(tmp_path: Path, text: str, key_path: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert f"  {key_path}: unknown key (typo?)" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("camera:\n  em_gain: -5\n", "camera.em_gain: Input should be greater than or equal to 1"),
        ("camera:\n  kind: scmos\n  em_gain: 300\n", "an sCMOS camera has no EM gain"),
        ("camera:\n  qe: 1.5\n", "camera.qe"),
        ("emitters:\n  z_range_nm: [500, -500]\n", "z_range_nm must be (min, max)"),
        ("background:\n  uniform_photons: [80, 40]\n", "uniform_photons must be (low, high)"),
        ("microscope:\n  laser:\n    power_mw: 200\n", "power_mw exceeds max_power_mw"),
        ("microscope:\n  exposure_ms: 30\n  frame_interval_ms: 20\n", "frame_interval_ms must"),
        ("microscope:\n  fov_px: [4, 64]\n", "microscope.fov_px.0"),
        ("psf:\n  kind: airy\n", "psf: Input tag 'airy' found using 'kind' does not match"),
        ("camera:\n  pixel_size_nm: lots\n", "camera.pixel_size_nm: Input should be a valid"),
    ],
    ids=[
        "negative-em-gain",
        "scmos-em-gain",
        "qe>1",
        "z-min>max",
        "bg-low>high",
        "laser>max",
        "exposure>interval",
        "tiny-fov",
        "unknown-psf",
        "not-a-number",
    ],
)
def test_a_bad_value_gives_a_clear_error(tmp_path: Path, text: str, expected: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = _write(tmp_path, "camera:\n  qe: 0\n  em_gain: 0.5\n")
    with pytest.raises(ConfigError, match=r"2 problem\(s\)") as info:
        load_config(path)
    assert "camera.qe" in str(info.value)
    assert "camera.em_gain" in str(info.value)


def test_a_missing_file_says_where_to_look(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, "camera: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_a_top_level_list_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(_write(tmp_path, "- camera\n- psf\n"))


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")) == Config()


def test_spline_calibration_is_relative_to_the_config_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "psf:\n  kind: spline\n  calibration: psf/beads_3dcal.mat\n")
    psf = load_config(path).psf
    assert isinstance(psf, SplinePsfConfig)
    assert psf.calibration == (tmp_path / "psf" / "beads_3dcal.mat").resolve()


def test_the_tree_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.camera.em_gain = 10  # type: ignore[misc]
