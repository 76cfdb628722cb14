"""Deep-STORM's detection threshold: chosen after training, in the card, used by inference.

The choice is checked on the bundled model (trained, so the threshold matters) with a poor
configured threshold; the trainer and the CLI paths on a tiny network trained for two steps.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from live_decode.cli.main import main
from live_decode.config import Config, load_config
from live_decode.model.card import read_card
from live_decode.model.checkpoint import bundled_model_path, load_network, save_model
from live_decode.model.deepstorm import DeepStormNet
from live_decode.model.deepstorm_post import localize_density
from live_decode.model.scaling import Scaling
from live_decode.pipeline.build import DEMO_CONFIG
from live_decode.pipeline.kinds import LocalizerOptions, load_localizer
from live_decode.simulation.batch import WindowSimulator
from live_decode.training.deepstorm import DeepStormTrainer
from live_decode.training.deepstorm_thresholds import (
    THRESHOLD_GRID,
    DeepStormThresholdChoice,
    choose_deepstorm_threshold,
    deepstorm_validation_set,
    predict_density,
)
from live_decode.training.validation import score

WINDOWS = 48
POOR = 0.9  # only the brightest, surest emitters are found


@pytest.fixture(scope="module")
def bundled() -> tuple[DeepStormNet, Config]:
    net, card = load_network(bundled_model_path("deepstorm_demo"))
    assert isinstance(net, DeepStormNet)
    return net, card.parsed_config


def _with_threshold(cfg: Config, threshold: float) -> Config:
    ds = cfg.model.deepstorm.model_copy(update={"threshold": threshold})
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"deepstorm": ds})})


def _efficiency_on(net: DeepStormNet, cfg: Config, threshold: float, seed: int) -> float:
    """Lateral efficiency of ``net`` at ``threshold`` on validation windows of ``seed``."""
    val = deepstorm_validation_set(cfg, n_windows=WINDOWS, seed=seed)
    crop = cfg.training.crop_px
    sim = WindowSimulator(cfg, (crop, crop), n_frames=1)
    x = Scaling.from_config(cfg).scale_input(sim.camera.to_photons(val.batch.adu))
    out = predict_density(net, x)
    at = cfg.model.deepstorm.model_copy(update={"threshold": threshold})
    px = cfg.camera.pixel_size_nm
    locs = localize_density(out, torch.arange(out.shape[0]), at, px)
    return score(locs, val.ground_truth(px), is_3d=False)["efficiency_lat"]


def test_a_poor_threshold_is_replaced_by_a_better_one(
    bundled: tuple[DeepStormNet, Config],
) -> None:
    net, cfg = bundled
    poor = _with_threshold(cfg, POOR)
    choice = choose_deepstorm_threshold(net, poor, n_windows=WINDOWS)
    assert choice.default == POOR and choice.criterion == "efficiency_lat"
    assert choice.threshold < POOR and choice.score > choice.default_score + 0.1
    assert choice.score == max(row["efficiency_lat"] for row in choice.table)
    assert choice.n_windows == WINDOWS and choice.window_px == cfg.training.crop_px
    # the table is an ordinary detection at each threshold on those windows
    row = next(r for r in choice.table if r["threshold"] == choice.threshold)
    seed = cfg.training.seed + 20_011
    assert _efficiency_on(net, cfg, choice.threshold, seed) == pytest.approx(row["efficiency_lat"])
    # and the choice holds on windows it was not chosen on
    other = 4242
    assert _efficiency_on(net, cfg, choice.threshold, other) > (
        _efficiency_on(net, cfg, POOR, other) + 0.1
    )


def test_a_given_threshold_is_kept(bundled: tuple[DeepStormNet, Config]) -> None:
    net, cfg = bundled
    choice = choose_deepstorm_threshold(net, cfg, n_windows=8, threshold=0.45)
    assert choice.threshold == 0.45 and choice.given == ("threshold",)
    assert [r["threshold"] for r in choice.table] == [0.45, cfg.model.deepstorm.threshold]
    again = DeepStormThresholdChoice.from_dict(json.loads(json.dumps(choice.to_dict())))
    assert replace(again, table=[]) == replace(choice, table=[])  # the table's NaN ≠ NaN


def _tiny_config() -> Config:
    data = load_config(DEMO_CONFIG).model_dump(mode="json")
    data["model"].update(
        kind="deepstorm", temporal_context=False, deepstorm={"filters": 2, "upsampling": 4}
    )
    data["training"].update(crop_px=16, batch_size=4, eval_samples=8, eval_every=1000)
    return Config.model_validate(data)


def test_the_trainer_writes_the_chosen_threshold_into_the_card_and_inference_uses_it(
    tmp_path: Path,
) -> None:
    trainer = DeepStormTrainer(_tiny_config(), tmp_path, device="cpu", name="ds")
    trainer.run(max_steps=2)
    choice = trainer.thresholds
    assert isinstance(choice, DeepStormThresholdChoice) and choice.step == 2
    card = read_card(tmp_path / "ds.pt")
    assert card.thresholds is not None and card.thresholds["threshold"] == choice.threshold
    assert card.parsed_config.model.deepstorm.threshold == choice.threshold
    localizer = load_localizer(tmp_path / "ds.pt", LocalizerOptions(torch.device("cpu")))
    assert localizer.deepstorm.threshold == choice.threshold  # type: ignore[attr-defined]
    # a resumed trainer keeps the choice
    resumed = DeepStormTrainer(_tiny_config(), tmp_path, device="cpu", name="ds")
    resumed.load_checkpoint()
    assert isinstance(resumed.thresholds, DeepStormThresholdChoice)
    saved = resumed.thresholds  # an untrained network finds nothing: NaN scores, ≠ themselves
    assert (saved.threshold, saved.step) == (choice.threshold, 2)
    assert len(saved.table) == len(THRESHOLD_GRID)  # the config's 0.3 is on the grid
    assert resumed.deepstorm.threshold == choice.threshold


def test_train_cli_threshold_flag_reaches_deepstorm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ds.yaml"
    config.write_text(yaml.safe_dump(_tiny_config().model_dump(mode="json")), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", str(config), "--out", str(out), "--steps", "1", "--threads", "1"]
    assert main([*argv, "--threshold", "0.45"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])
    assert summary["thresholds"]["given"] == ["threshold"]
    assert summary["thresholds"]["threshold"] == 0.45
    assert read_card(out / "model.pt").parsed_config.model.deepstorm.threshold == 0.45
    assert main([*argv, "--overwrite", "--split-threshold", "0.5"]) == 2
    assert "--split-threshold is DECODE's" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--threshold", "1.5"]) == 2
    assert "in (0, 1]" in capsys.readouterr().err


def test_thresholds_cli_rechooses_a_saved_models_threshold(
    tmp_path: Path, bundled: tuple[DeepStormNet, Config], capsys: pytest.CaptureFixture[str]
) -> None:
    """A model saved with a poor threshold gets a better one; --dry-run writes nothing."""
    net, cfg = bundled
    card = read_card(bundled_model_path("deepstorm_demo"))
    path = tmp_path / "poor.pt"
    save_model(path, net, replace(card, config=_with_threshold(cfg, POOR).model_dump(mode="json")))
    argv = ["thresholds", str(path), "--windows", str(WINDOWS), "--threads", "1", "--json"]
    assert main([*argv, "--threshold", str(POOR)]) == 0  # given: the card's metrics at it
    poor = json.loads(capsys.readouterr().out)
    assert poor["given"] == ["threshold"] and read_card(path).metrics == poor["metrics"]
    assert main([*argv, "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["model"] is None and read_card(path).metrics == poor["metrics"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    new = read_card(path)  # the sidecar; the model file's own card agrees
    assert new.thresholds is not None and new.thresholds["default"] == POOR
    chosen = new.parsed_config.model.deepstorm.threshold
    embedded = load_network(path)[1]
    assert embedded.thresholds is not None and embedded.thresholds["threshold"] == chosen
    assert embedded.parsed_config.model.deepstorm.threshold == chosen
    assert chosen == result["threshold"] == dry["threshold"] < POOR
    assert result["score"] > result["default_score"] + 0.1
    # the card's held-out metrics are re-measured at the new threshold: more emitters found
    assert new.metrics["n_tp"] > poor["metrics"]["n_tp"] + 50
    assert new.metrics["step"] == card.training_steps
