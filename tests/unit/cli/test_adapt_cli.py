"""``live-decode adapt``: wake-only on the demo camera (σ 120 → 150 nm), and one short wake–sleep.

The movie is simulated at σ = 150 nm; the setup says 120 nm; the bundled model (trained at
130 nm) localizes. The wake phase must put ``psf.sigma_nm`` in ``adapt.json`` within 7 % of
150 nm, with the other fitted parameters and a higher likelihood.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tifffile
import torch
import yaml

import live_decode as ld
from live_decode.cli.main import main
from live_decode.config import config_from_dict, load_config
from live_decode.model.card import read_card
from live_decode.model.checkpoint import bundled_model_path


def _setup(tmp_path: Path, sigma_nm: float, **sections: Any) -> Path:
    data = ld.demo_config().model_dump(mode="json")
    data["psf"] = {"kind": "gaussian", "sigma_nm": sigma_nm}
    data.update(sections)
    path = tmp_path / f"setup_{sigma_nm:g}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _movie(tmp_path: Path, sigma_nm: float, frames: int) -> Path:
    truth = config_from_dict(yaml.safe_load(_setup(tmp_path, sigma_nm).read_text()))
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, ld.simulate(truth, frames=frames, seed=11).movie)
    return path


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_wake_only_fits_sigma_on_the_demo_camera(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    movie = _movie(tmp_path, 150.0, frames=100)
    setup = _setup(tmp_path, 120.0)
    out = tmp_path / "adapted"
    argv = ["adapt", str(bundled_model_path()), str(movie), "--config", str(setup)]
    argv += ["--out", str(out), "--rounds", "1", "--no-sleep", "--threads", "1"]
    argv += ["--fit-frames", "40"]
    assert main(argv) == 0
    report = json.loads((out / "adapt.json").read_text())
    assert report["psf"]["sigma_nm"] == pytest.approx(150.0, rel=0.07)
    assert report["psf_before"]["sigma_nm"] == pytest.approx(120.0)
    before, after = report["loglik_per_px"][0]
    assert after > before
    assert report["loglik_gain_per_px"] == pytest.approx(after - before)
    lo, hi = report["setup_after"]["background"]["uniform_photons"]
    assert 40.0 < lo <= hi < 80.0
    assert report["adapted_model"] is None
    adapted = load_config(out / "setup.yaml")
    assert adapted.psf.kind == "gaussian"
    assert adapted.psf.sigma_nm == pytest.approx(report["psf"]["sigma_nm"], abs=0.1)
    # no postprocess section: run with it, a model keeps the thresholds its card carries
    assert "postprocess" not in yaml.safe_load((out / "setup.yaml").read_text())
    assert (out / "adapt.png").stat().st_size > 10_000
    assert "σx 120.0 →" in capsys.readouterr().out
    # an earlier adaptation is not replaced without --overwrite
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_wake_sleep_writes_a_model_whose_card_records_the_adaptation(tmp_path: Path) -> None:
    movie = _movie(tmp_path, 150.0, frames=40)
    tiny_training = {"batch_size": 4, "eval_samples": 8, "eval_every": 2, "checkpoint_every": 2}
    setup = _setup(tmp_path, 120.0, training=tiny_training)
    out = tmp_path / "adapted"
    argv = ["adapt", str(bundled_model_path()), str(movie), "--config", str(setup)]
    argv += ["--out", str(out), "--steps", "2", "--threads", "1", "--fit-frames", "20"]
    assert main(argv) == 0
    report = json.loads((out / "adapt.json").read_text())
    assert report["rounds"][0]["sleep"]["steps"] == 2
    card = read_card(out / "model.pt")
    assert card.init_from == "demo_lite"
    assert card.parsed_config.psf == load_config(out / "setup.yaml").psf
    assert card.adaptation is not None
    assert card.adaptation["psf_before"]["sigma_nm"] == pytest.approx(120.0)
    assert card.adaptation["psf"]["sigma_nm"] == pytest.approx(report["psf"]["sigma_nm"])
    assert card.adaptation["setup_before"]["psf"]["sigma_nm"] == 120.0
