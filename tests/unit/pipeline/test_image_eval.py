"""Image scores of a movie: NMSE of renders and network images, FRC halves."""

from __future__ import annotations

import numpy as np
import pytest

from live_decode.messages import LOC_DTYPE, TRUTH_DTYPE
from live_decode.pipeline.image_eval import FRC_BLOCK_FRAMES, frc_half, score_images


def _tables(n: int, jitter_nm: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    gt = np.zeros(n, dtype=TRUTH_DTYPE)
    gt["frame"] = rng.integers(0, 40, n)
    gt["x_nm"], gt["y_nm"] = rng.uniform(0, 1600, n), rng.uniform(0, 1600, n)
    locs = np.zeros(n, dtype=LOC_DTYPE)
    locs["frame"] = gt["frame"]
    locs["x_nm"] = gt["x_nm"] + rng.normal(0, jitter_nm, n) if jitter_nm else gt["x_nm"]
    locs["y_nm"] = gt["y_nm"] + rng.normal(0, jitter_nm, n) if jitter_nm else gt["y_nm"]
    return locs, gt


def test_frc_halves_are_alternate_blocks() -> None:
    halves = frc_half(np.arange(4 * FRC_BLOCK_FRAMES))
    assert halves.tolist() == [0] * 10 + [1] * 10 + [0] * 10 + [1] * 10


def test_localizations_at_the_truth_score_nmse_zero_and_worse_with_errors() -> None:
    exact, gt = _tables(3000, 0.0)
    scores = score_images(exact, gt, (16, 16), 100.0, upsampling=4)
    assert scores.image_source == "localizations" and scores.pixel_nm == 25.0
    assert scores.nmse == pytest.approx(0.0, abs=1e-12) and scores.nmse_locs == scores.nmse
    noisy, _ = _tables(3000, 30.0)
    worse = score_images(noisy, gt, (16, 16), 100.0, upsampling=4)
    assert 0.03 < worse.nmse < 1.0
    assert np.isfinite(worse.frc_nm) and worse.frc_nm > 2 * 25.0  # above the grid's Nyquist


def test_a_network_image_is_scored_instead_of_the_render() -> None:
    locs, gt = _tables(500, 0.0)
    halves = np.zeros((2, 64, 64))
    halves[0, 10, 10] = 1.0  # an image unlike the truth
    scores = score_images(locs, gt, (16, 16), 100.0, upsampling=4, network_halves=halves)
    assert scores.image_source == "network image"
    assert scores.nmse > 0.9 and scores.nmse_locs == pytest.approx(0.0, abs=1e-12)
