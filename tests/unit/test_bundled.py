"""The embedded default: demo config and bundled model ship with the package and fit together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from live_decode.config import config_from_dict, load_config
from live_decode.inference.compat import card_mismatches
from live_decode.inference.engine import Localizer
from live_decode.inference.offline import localize_movie
from live_decode.model.checkpoint import bundled_model_path, load_model
from live_decode.pipeline.build import DEMO_CONFIG, build_localizer
from live_decode.simulation.microscope import SimulatedMicroscope
from live_decode.sources.base import camera_from_config

REPO = Path(__file__).resolve().parents[2]


def test_bundled_demo_config_is_configs_demo_yaml() -> None:
    assert DEMO_CONFIG.read_text() == (REPO / "configs" / "demo.yaml").read_text()


def test_bundled_model_loads_with_a_card_that_matches_the_demo_camera() -> None:
    cfg = load_config(DEMO_CONFIG)
    _net, card = load_model(bundled_model_path())
    assert card.training_steps > 0 and "jaccard" in card.metrics
    assert card.parsed_config.camera == cfg.camera
    assert card.parsed_config.psf == cfg.psf
    frame = np.full((64, 64), 200, dtype=np.uint16)
    assert card_mismatches(card, camera_from_config(cfg), frame) == []


def test_bundled_model_finds_the_emitters_of_the_demo_microscope() -> None:
    cfg = load_config(DEMO_CONFIG)
    net, card = load_model(bundled_model_path())
    mic = SimulatedMicroscope(cfg)
    frames = [mic.next_frame() for _ in range(12)]
    movie = np.stack([f.adu for f in frames])
    locs = localize_movie(Localizer(net, card, torch.device("cpu")), movie, camera_from_config(cfg))
    n_true = sum(len(f.truth) for f in frames)
    # A trained model finds most emitters and does not invent many (loose: a smoke check).
    assert 0.6 * n_true < len(locs) < 1.3 * n_true


def test_thresholds_come_from_the_config_when_it_sets_them_else_from_the_card() -> None:
    _net, card = load_model(bundled_model_path())
    default = build_localizer(config_from_dict({}), device="cpu")
    assert default.postprocess == card.parsed_config.postprocess
    explicit = config_from_dict({"postprocess": {"raw_threshold": 0.7}})
    assert build_localizer(explicit, device="cpu").postprocess.raw_threshold == 0.7
