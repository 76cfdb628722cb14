"""``live-decode evaluate`` with the committed model on small simulated movies, demo microscope.

These are the fast accuracy checks of the bundled model (CPU, 64×64 px, a few hundred frames):
the full-size figures are in the model card. Bounds are a little looser than the acceptance
figures because the movies are small (a few thousand emitters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from live_decode.cli.main import main
from live_decode.io.thunderstorm import read_ground_truth_csv
from live_decode.model.checkpoint import bundled_model_path

DEMO = Path(__file__).parents[3] / "configs" / "demo.yaml"


def _simulate(out: Path, frames: int, laser_mw: float, seed: int) -> Path:
    argv = ["simulate", str(DEMO), "--frames", str(frames), "--out", str(out)]
    assert main([*argv, "--laser-mw", str(laser_mw), "--seed", str(seed)]) == 0
    return out


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo density (~1 emitter/µm²/frame on filaments), 60 frames."""
    return _simulate(tmp_path_factory.mktemp("dense"), 60, 5.0, seed=31)


def _evaluate_json(movie_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    model = str(bundled_model_path())
    movie, gt = str(movie_dir / "movie.ome.tif"), str(movie_dir / "ground_truth.csv")
    capsys.readouterr()  # drop what earlier commands printed
    assert main(["evaluate", model, movie, gt, "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_demo_density_accuracy_of_the_bundled_model(
    dense: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _evaluate_json(dense, capsys)
    density = len(read_ground_truth_csv(dense / "ground_truth.csv")) / 60 / (6.4 * 6.4)
    assert 0.6 < density < 1.6
    assert result["jaccard"] >= 0.72
    assert result["rmse_lat_nm"] <= 30.0
    assert result["n_tp"] + result["n_fn"] == pytest.approx(density * 60 * 6.4**2)
    cal = result["sigma_calibration"]
    # σ ranks the errors (calibration curve) and per emitter reaches most of its ceiling.
    assert cal["binned_pearson_x"] > 0.9 and cal["binned_pearson_y"] > 0.9
    assert cal["pearson_x"] > 0.6 * cal["pearson_ideal_x"]
    assert result["rmse_vs_crlb"] and all(row["n"] > 0 for row in result["rmse_vs_crlb"])


def test_isolated_emitters_reach_the_crlb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """≤ 0.1 µm⁻²: lateral RMSE within 1.3 × √CRLB in the photon bin holding the mean count."""
    movie = _simulate(tmp_path / "iso", 250, 0.25, seed=32)
    gt = read_ground_truth_csv(movie / "ground_truth.csv")
    assert len(gt) / 250 / (6.4 * 6.4) <= 0.1
    result = _evaluate_json(movie, capsys)
    mean_photons = float(np.mean(gt["photons"]))
    rows = result["rmse_vs_crlb"]
    (row,) = [r for r in rows if r["photons_lo"] <= mean_photons < r["photons_hi"]]
    rmse = np.hypot(row["rmse_x_nm"], row["rmse_y_nm"]) / np.sqrt(2)
    bound = np.hypot(row["sqrt_crlb_x_nm"], row["sqrt_crlb_y_nm"]) / np.sqrt(2)
    assert row["n"] > 80
    assert rmse < 1.3 * bound
    assert result["jaccard"] > 0.85


def test_table_and_plots(dense: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [str(bundled_model_path()), str(dense / "movie.ome.tif")]
    argv += [str(dense / "ground_truth.csv"), "--out", str(tmp_path / "plots"), "--device", "cpu"]
    assert main(["evaluate", *argv]) == 0
    table = capsys.readouterr().out
    for name in ("jaccard", "rmse_lat_nm", "efficiency", "pearson_ideal_x", "RMSE vs √CRLB"):
        assert name in table
    for png in ("rmse_vs_crlb.png", "sigma_calibration.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_missing_ground_truth_is_a_clean_error(
    dense: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, movie = str(bundled_model_path()), str(dense / "movie.ome.tif")
    assert main(["evaluate", model, movie, str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_ground_truth_of_another_movie_is_refused(
    dense: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _simulate(tmp_path / "long", 80, 5.0, seed=33)  # 80 frames, the movie has 60
    model, movie = str(bundled_model_path()), str(dense / "movie.ome.tif")
    capsys.readouterr()
    assert main(["evaluate", model, movie, str(other / "ground_truth.csv")]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "60 frames of 64×64 px" in err


def test_also_scores_both_models_and_times_each_in_the_same_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--also``: DECODE and Deep-STORM on one movie, each with its inference frames/s."""
    movie = _simulate(tmp_path / "both", 20, 5.0, seed=34)
    argv = ["evaluate", str(bundled_model_path()), str(movie / "movie.ome.tif")]
    argv += [str(movie / "ground_truth.csv"), "--device", "cpu", "--threads", "1"]
    argv += ["--also", str(bundled_model_path("deepstorm_demo")), "--image-upsampling", "4"]
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert [m["kind"] for m in models] == ["decode", "deepstorm"]
    for m in models:
        timing = m["inference"]
        assert timing["frames"] == 20 and timing["device"] == "cpu"
        assert timing["torch_threads"] == 1 and timing["seconds"] > 0
        assert m["frames_per_s"] == pytest.approx(20 / timing["seconds"])
        assert m["jaccard"] > 0 and m["images"]["nmse"] >= 0
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "one run" in table and "frames/s" in table and "deepstorm_demo" in table
