"""Every config in ``configs/`` runs as the README says, or is refused as the README says.

Configs the bundled model fits are run for real (``live-decode run CONFIG --frames 100
--headless``, real processes) and must localize ≥ 90 % of the frames acquired once the worker was
up. They run at half their camera rate (exposure and frame interval doubled in a copy): whether a
CPU keeps up with the camera is a benchmark's question (``benchmarks/``), not a test's — on a
loaded 2-core machine the bundled model fell to ~25 frames/s against the demo's 33.

Configs that need a model of their own first (3-D astigmatism, sCMOS cameras) must be refused
with every difference named and the ``live-decode train`` command to run, using the camera the
source itself describes (the Micro-Manager DemoCamera's core for ``mm_democam.yaml``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from live_decode.config import load_config
from live_decode.inference.compat import check_compatible
from live_decode.messages import CameraMeta
from live_decode.model.card import read_card
from live_decode.model.checkpoint import bundled_model_path
from live_decode.sources.base import camera_from_config
from live_decode.testing.mm import DEMOCAM_MISSING, democam_available

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
N_FRAMES = 100

RUNS = ("demo.yaml", "mm_sim.yaml")
"""Configs the bundled model fits: they run as they are."""
REFUSED = {  # config -> the differences the bundled 2-D EMCCD model must name
    "astig_emccd.yaml": {"2-D vs 3-D", "PSF kind"},
    "scmos_2d.yaml": {"camera type", "pixel size"},
    "mm_democam.yaml": {"camera type"},
}


OWN_MODEL = {"deepstorm_demo.yaml": "tests/integration/test_deepstorm_run.py"}
"""Configs that run another bundled model, and the test that runs each."""
OWN_DECODE_MODEL = {"epfl_bundled_tubes.yaml": "epfl_bundled_tubes"}
"""Configs with a bundled DECODE model of their own (``inference.model``): it must fit them."""


def test_every_config_is_covered() -> None:
    assert {p.name for p in CONFIGS.glob("*.yaml")} == set(RUNS) | set(REFUSED) | set(
        OWN_MODEL
    ) | set(OWN_DECODE_MODEL)
    assert all((REPO / test).is_file() for test in OWN_MODEL.values())


@pytest.mark.parametrize("name", sorted(OWN_DECODE_MODEL))
def test_configs_with_their_own_bundled_model_fit_it(name: str) -> None:
    cfg = load_config(CONFIGS / name)
    assert cfg.inference.model == bundled_model_path(OWN_DECODE_MODEL[name])
    camera = camera_from_config(cfg)
    own = read_card(bundled_model_path(OWN_DECODE_MODEL[name]))
    assert check_compatible(own, camera, cfg, config_name=f"configs/{name}") == []
    assert own.parsed_config.camera == cfg.camera and own.parsed_config.psf == cfg.psf


def _camera(name: str) -> CameraMeta:
    """The camera as the config's source describes it (before any frame is acquired)."""
    cfg = load_config(CONFIGS / name)
    if cfg.source.kind != "mm":
        return camera_from_config(cfg)
    if not democam_available():
        pytest.skip(DEMOCAM_MISSING)
    from live_decode.sources.mm import MMSource

    source = MMSource.from_config(cfg)
    try:
        camera = source.camera
        # calibration.json records where each value came from: the core, a property, the config
        assert source.calibration_sources["baseline_adu"] == "camera property Offset"
        assert source.calibration_sources["e_per_adu"] == "config source.e_per_adu (override)"
        assert source.calibration_sources["read_noise_e"] == "config camera.read_noise_e"
        return camera
    finally:
        source.close()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_configs_that_need_their_own_model_are_refused_with_what_to_do(name: str) -> None:
    card = read_card(bundled_model_path())
    found = check_compatible(
        card, _camera(name), load_config(CONFIGS / name), config_name=f"configs/{name}"
    )
    assert {m.what for m in found} == REFUSED[name], [str(m) for m in found]
    assert any(f"live-decode train configs/{name}" in str(m) for m in found)


def _at_half_rate(name: str, folder: Path) -> Path:
    """A copy of ``configs/NAME`` whose camera runs at half the rate (paths made absolute)."""
    data = yaml.safe_load((CONFIGS / name).read_text())
    mic = data.setdefault("microscope", {})
    for key in ("exposure_ms", "frame_interval_ms"):
        if key in mic:
            mic[key] = 2 * float(mic[key])
    source = data.get("source", {})
    if source.get("kind") == "mm":
        source["exposure_ms"] = 2 * float(source.get("exposure_ms", 30.0))
        for key in ("system_config", "adapter_path"):
            if source.get(key):
                source[key] = str((CONFIGS / source[key]).resolve())
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", RUNS)
def test_configs_the_bundled_model_fits_run_headless(name: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = _at_half_rate(name, tmp_path)
    cmd = [
        sys.executable, "-m", "live_decode", "run", str(config), "--frames",
        str(N_FRAMES), "--headless", "--no-dashboard", "--no-raw", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    worker = json.loads((out / "worker_summary.json").read_text())
    assert summary["frames_in"] == N_FRAMES
    assert worker["mismatches"] == []
    # Frames the camera produced before the worker had loaded its model are dropped and
    # counted (issue 12's ready handshake removes that loss); of the rest, ≥ 90 % localized.
    first = worker["first_frame"]
    assert first is not None, "the worker never received a frame"
    acquired_while_ready = N_FRAMES - int(first)
    assert acquired_while_ready >= 20, f"the worker only started at frame {first}"
    assert summary["frames_processed"] >= 0.9 * acquired_while_ready, summary
    assert summary["localizations"] > 0
