"""``live-decode fit``: a raw movie of a setup no shipped config describes → calibration, a model
trained for it (fine-tuned from the bundled one), the movie localized with it; resumable.

The budget is tiny (a handful of steps on 16-px crops, via ``--set``): this tests the wiring and
the files, not the accuracy a real budget reaches (``benchmarks/`` and the README's figures do).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tifffile
import torch

from live_decode.cli.main import main
from live_decode.config import load_config
from live_decode.model.card import read_card
from live_decode.testing.calibration import simulate

TINY = [
    *("--set", "training.crop_px=16", "--set", "training.batch_size=2"),
    *("--set", "training.eval_samples=8", "--set", "training.checkpoint_every=1000"),
]


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames (40×40 px) of an EMCCD setup at 11 ADU/photon and 117 nm pixels, plain TIFF."""
    _, frames, _ = simulate("emccd", frames=60, laser_mw=4.0, fov_px=40)
    path = tmp_path_factory.mktemp("raw") / "raw.tif"
    tifffile.imwrite(path, frames)
    return path


def fit_args(movie: Path, out: Path, steps: int, *extra: str) -> list[str]:
    args = ["fit", str(movie), "--out", str(out), "--steps", str(steps), "--device", "cpu"]
    return [*args, "--pixel-size-nm", "117", "--camera", "emccd", "--no-refine", *TINY, *extra]


def test_fit_calibrates_trains_localizes_and_resumes(
    movie: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path / "fit"
        assert main(fit_args(movie, out, 5)) == 0
        printed = capsys.readouterr().out
        # The estimate comes before the training, from steps timed on the device.
        assert "training 5 steps on cpu:" in printed and "s/step" in printed
        assert printed.index("s/step") < printed.index("held-out accuracy")
        assert "fine-tuning from" in printed and "demo_lite" in printed

        cfg = load_config(out / "model" / "config.yaml")
        assert cfg.training.crop_px == 16 and cfg.camera.pixel_size_nm == pytest.approx(117)
        assert (out / "calibration" / "setup.yaml").is_file()
        card = read_card(out / "model" / "model.pt")
        assert card.training_steps == 5 and card.init_from == "demo_lite"
        report = json.loads((out / "fit.json").read_text())
        held_out = report["held_out_metrics"]
        assert held_out["jaccard"] == pytest.approx(card.metrics["jaccard"], abs=1e-3)
        assert f"Jaccard {held_out['jaccard']:.3f}" in printed
        assert report["estimate"]["steps"] == 5 and report["estimate"]["seconds_per_step"] > 0

        run = out / "run"  # the layout `live-decode localize` writes
        assert {"locs.csv", "locs.hdf5", "summary.json", "calibration.json"} <= {
            p.name for p in run.iterdir()
        }
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed"
        camera = json.loads((run / "calibration.json").read_text())["camera"]
        assert "model/config.yaml" in camera["e_per_adu"]["source"]  # the calibrated camera
        assert camera["e_per_adu"]["value"] == pytest.approx(cfg.camera.e_per_adu)

        assert main(fit_args(movie, out, 5)) == 2  # an earlier fit is never replaced silently
        assert "--resume" in capsys.readouterr().err
        assert main(fit_args(movie, out, 7, "--resume")) == 0
        assert read_card(out / "model" / "model.pt").training_steps == 7
        assert "resuming at step 5" in capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)
