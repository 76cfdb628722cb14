"""``live-decode fit``'s density recount on simulated movies of known density (tiny budgets).

Dense (≈7 emitters/µm²): the spot count of ``calibrate`` undercounts; after a short training the
network's count, corrected for its undercount on simulated windows, comes close to the truth and
the training range is widened to cover it (setup.yaml, config, card, fit.json, printed summary).
Sparse (≈0.8): the recount agrees with calibrate and nothing is widened.

The dense movie is too dense for calibrate's camera estimate (photon transfer), so, as a lab would
from the datasheet, the camera and the emitters' brightness are given with ``--set``: the recount,
not the camera estimate, is under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import tifffile
import torch
import yaml

from live_decode.cli.main import main
from live_decode.config import load_config
from live_decode.model.card import read_card
from live_decode.testing.calibration import CAMERAS, simulate

TINY = [
    *("--set", "training.crop_px=16", "--set", "training.eval_samples=8"),
    *("--set", "training.checkpoint_every=1000"),
]
KNOWN_SETUP = [
    f"camera.{key}={CAMERAS['emccd'][key]}"
    for key in ("e_per_adu", "em_gain", "baseline_adu", "qe", "read_noise_e")
] + [
    "psf.sigma_nm=150",
    "photophysics.photons_mean=2000",
    "photophysics.photons_sigma=400",
    "photophysics.on_time_mean_frames=3",
    "background.uniform_photons=[30, 60]",
    "background.variation_fraction=0.3",
]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def movie(tmp: Path, laser_mw: float) -> tuple[Path, float]:
    """60 frames, 40×40 px of 117 nm, and the true emitters/µm²/frame."""
    _, frames, truth = simulate("emccd", frames=60, laser_mw=laser_mw, fov_px=40)
    path = tmp / "raw.tif"
    tifffile.imwrite(path, frames)
    return path, truth


def fit_args(path: Path, out: Path, steps: int, batch: int, *extra: str) -> list[str]:
    args = ["fit", str(path), "--out", str(out), "--steps", str(steps), "--device", "cpu"]
    args += ["--pixel-size-nm", "117", "--camera", "emccd", "--no-refine", *TINY]
    return [*args, "--set", f"training.batch_size={batch}", *extra]


def test_a_dense_movie_widens_the_training_range_to_its_density(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = movie(tmp_path, laser_mw=60.0)
    assert truth > 6.5
    out = tmp_path / "fit"
    known = [item for key in KNOWN_SETUP for item in ("--set", key)]
    assert main(fit_args(path, out, 40, 8, *known)) == 0
    printed = capsys.readouterr().out
    assert "+ 1 density recount(s) ≈" in printed  # in the estimate, before the training

    density = json.loads((out / "fit.json").read_text())["density"]
    calibrated = density["calibrate_per_um2"]
    (done,) = density["recount"]
    assert calibrated < 0.85 * truth  # the spot count undercounts
    assert done["unreliable"] is None
    assert done["corrected_per_um2"] > done["raw_per_um2"]  # the network misses some too
    assert abs(done["corrected_per_um2"] - truth) < 0.2 * truth
    assert abs(done["corrected_per_um2"] - truth) < abs(calibrated - truth)
    lo, hi = done["range_after"]
    assert done["widened"] and hi > done["range_before"][1] and hi >= 1.3 * truth
    assert density["training_range_per_um2"] == [lo, hi]
    assert density["setup_per_um2"] == pytest.approx(done["corrected_per_um2"], abs=1e-3)

    setup = yaml.safe_load((out / "calibration" / "setup.yaml").read_text())
    assert setup["training"]["density_range_per_um2"] == [lo, hi]
    assert "recount round 1" in (out / "calibration" / "setup.yaml").read_text()
    assert load_config(out / "model" / "config.yaml").training.density_range_per_um2 == (lo, hi)
    card = read_card(out / "model" / "model.pt")
    assert card.parsed_config.training.density_range_per_um2 == (lo, hi)
    assert card.density_recount is not None and card.density_recount[0]["widened"]
    assert card.training_steps == 40 and card.init_from == "demo_lite"
    assert f"corrected {done['corrected_per_um2']:.2f} emitters/µm²/frame" in printed
    assert f"training range {done['range_before'][0]:g}–{done['range_before'][1]:g} →" in printed


def test_a_sparse_movie_keeps_its_range_and_no_recount_skips_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = movie(tmp_path, laser_mw=5.0)
    out = tmp_path / "fit"
    assert main(fit_args(path, out, 5, 2)) == 0
    density = json.loads((out / "fit.json").read_text())["density"]
    (done,) = density["recount"]
    assert not done["widened"] and done["range_after"] == done["range_before"]
    assert done["density_after"] == done["density_before"]  # sparse: calibrate's is kept
    assert abs(done["corrected_per_um2"] - truth) < 0.25 * truth
    setup = yaml.safe_load((out / "calibration" / "setup.yaml").read_text())
    assert setup["training"]["density_range_per_um2"] == done["range_before"]

    assert "density recount" in capsys.readouterr().out
    assert main(fit_args(path, out, 5, 2, "--overwrite", "--no-recount")) == 0
    assert "density recount" not in capsys.readouterr().out
    report = json.loads((out / "fit.json").read_text())
    assert report["density"]["recount"] == [] and report["estimate"]["recount_s"] == 0
    assert not (out / "model" / "recount.json").exists()
