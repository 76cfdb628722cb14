"""The bundled EPFL model: made for ``configs/epfl_bundled_tubes.yaml`` (the public EPFL 2013
"bundled tubes, high density" movie, calibrated from its pixels) and shipped with its card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import live_decode as ld
from live_decode.config import load_config
from live_decode.model.checkpoint import bundled_model_path, load_model
from live_decode.simulation.batch import WindowSimulator
from live_decode.training.validation import HeldOutSet, evaluate_held_out

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "epfl_bundled_tubes.yaml"
MOVIE = REPO.parent / "shared" / "data" / "movies" / "testStack_SimulatedMicrotubules.tif"
MODEL = bundled_model_path("epfl_bundled_tubes")


def test_the_card_records_its_setup_lineage_and_thresholds() -> None:
    _net, card = load_model(MODEL)
    cfg = load_config(CONFIG)
    assert card.parsed_config.camera == cfg.camera and card.parsed_config.psf == cfg.psf
    assert card.init_from is not None and card.training_steps > 0
    assert card.thresholds is not None  # chosen on simulated validation windows of the setup
    assert card.parsed_config.postprocess.raw_threshold == card.thresholds["raw_threshold"]


def test_it_localizes_fresh_simulations_of_its_setup() -> None:
    """New windows (another seed than training's held-out set) at the calibrated density."""
    cfg = load_config(CONFIG)
    net, card = load_model(MODEL)
    cfg = cfg.model_copy(update={"postprocess": card.parsed_config.postprocess})
    sim = WindowSimulator(cfg, (40, 40), n_frames=3)
    held = HeldOutSet.simulate(
        sim, 48, cfg.emitters.density_per_um2, torch.Generator().manual_seed(424242)
    )
    metrics = evaluate_held_out(net, held, cfg, card.parsed_scaling, sim)
    # card: JI ≈ 0.68 / 35 nm at 3.4 µm⁻² with emitters that blink within a frame (many dim)
    assert metrics["jaccard"] > 0.55 and metrics["rmse_lat_nm"] < 50.0, metrics


@pytest.mark.skipif(not MOVIE.is_file(), reason=f"the public EPFL movie is not at {MOVIE}")
def test_the_public_movie_comes_out_as_tubes() -> None:
    """No ground truth here: the reconstruction must be filamentous, not a haze or a grid."""
    model = ld.load_model(MODEL)
    locs = model.localize(MOVIE, CONFIG)
    per_frame = len(locs) / 361
    assert 60 < per_frame < 300, per_frame  # ~225 emitters per frame, many too dim to find
    # 90 % of the localizations fall on a small part of the field (the tubes), at 50 nm bins
    h, _, _ = np.histogram2d(locs["x_nm"], locs["y_nm"], bins=128, range=[[0, 6400], [0, 6400]])
    counts = np.sort(h.ravel())[::-1]
    area_90 = np.searchsorted(np.cumsum(counts), 0.9 * counts.sum()) / counts.size
    assert area_90 < 0.25, area_90
    # sub-pixel positions are not stuck to the camera grid (a DECODE artefact when undertrained)
    frac = np.mod(locs["x_nm"].to_numpy(), 100.0) / 100.0
    hist, _ = np.histogram(frac, bins=10, range=(0, 1))
    assert hist.max() < 2.0 * hist.mean(), hist
