"""Detection thresholds chosen after training on simulated validation windows of the setup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from live_decode.cli.main import main
from live_decode.config import (
    Config,
    ModelConfig,
    PostprocessConfig,
    TrainingConfig,
    config_from_dict,
)
from live_decode.errors import LiveDecodeError
from live_decode.model.checkpoint import load_model, make_card, save_model
from live_decode.pipeline.build import build_localizer
from live_decode.training.thresholds import choose_thresholds, validation_set
from live_decode.training.trainer import Trainer
from live_decode.training.validation import evaluate_held_out

WINDOWS = 96


def _tiny_config() -> Config:
    """As in test_trainer_smoke: an 8-filter network on 16 px crops."""
    training = TrainingConfig(
        crop_px=16,
        batch_size=8,
        lr=3e-3,
        eval_samples=16,
        eval_every=1000,
        checkpoint_every=1000,
        density_range_per_um2=(1.0, 3.0),
    )
    return Config(model=ModelConfig(size="custom", filters=8), training=training)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trainer:
    """The tiny network after 160 steps: it detects (Jaccard ~0.7) but is far from perfect."""
    torch.manual_seed(0)
    trainer = Trainer(_tiny_config(), tmp_path_factory.mktemp("thr"), device="cpu", name="tiny")
    trainer.run(max_steps=160, search_thresholds=False)
    return trainer


def _with_post(cfg: Config, raw: float, split: float) -> Config:
    post = PostprocessConfig(raw_threshold=raw, split_threshold=split)
    return cfg.model_copy(update={"postprocess": post})


def test_the_chosen_pair_scores_at_least_as_well_as_the_defaults(trained: Trainer) -> None:
    cfg = trained.cfg
    choice = choose_thresholds(trained.net, cfg, trained.scaling, n_windows=WINDOWS)
    assert choice.criterion == "efficiency_lat" and choice.n_windows == WINDOWS
    assert choice.score >= choice.default_score
    assert len(choice.table) == 9 * 8  # the defaults (0.1, 0.6) are on both grids
    # the table's figures are those of an ordinary evaluation with that pair on the same windows
    val = validation_set(cfg, n_windows=WINDOWS)
    for pair in ((choice.raw_threshold, choice.split_threshold), choice.default):
        post = PostprocessConfig(raw_threshold=pair[0], split_threshold=pair[1])
        again = evaluate_held_out(trained.net, val, cfg, trained.scaling, trained.sim, post)
        row = next(r for r in choice.table if (r["raw_threshold"], r["split_threshold"]) == pair)
        assert again["efficiency_lat"] == pytest.approx(row["efficiency_lat"])
    assert choice.score == max(r["efficiency_lat"] for r in choice.table)


def test_poor_configured_thresholds_are_replaced_by_better_ones(trained: Trainer) -> None:
    poor = _with_post(trained.cfg, 0.02, 0.02)  # noise is detected too
    choice = choose_thresholds(trained.net, poor, trained.scaling, n_windows=WINDOWS)
    assert choice.default == (0.02, 0.02) and choice.raw_threshold > 0.02
    assert choice.score > choice.default_score + 0.1
    # and the choice holds on windows it was not chosen on
    other = validation_set(poor, n_windows=WINDOWS, seed=12345)
    sim = trained.sim
    chosen = evaluate_held_out(trained.net, other, poor, trained.scaling, sim, choice.postprocess)
    before = evaluate_held_out(trained.net, other, poor, trained.scaling, sim)
    assert chosen["efficiency_lat"] > before["efficiency_lat"] + 0.1


def test_given_thresholds_are_not_searched(trained: Trainer) -> None:
    net, cfg, scaling = trained.net, trained.cfg, trained.scaling
    only_split = choose_thresholds(net, cfg, scaling, n_windows=16, raw_threshold=0.35)
    assert only_split.raw_threshold == 0.35 and only_split.given == ("raw",)
    assert {r["raw_threshold"] for r in only_split.table} == {0.35, 0.1}  # 0.1: the default row
    both = choose_thresholds(
        net, cfg, scaling, n_windows=16, raw_threshold=0.35, split_threshold=0.55
    )
    assert (both.raw_threshold, both.split_threshold) == (0.35, 0.55)
    assert both.given == ("raw", "split") and len(both.table) == 2


def test_the_trainer_writes_the_chosen_thresholds_into_the_card_and_inference_uses_them(
    trained: Trainer,
) -> None:
    choice = trained.choose_thresholds()
    trained.evaluate()
    path = trained.save_model()
    _net, card = load_model(path)
    post = card.parsed_config.postprocess
    assert (post.raw_threshold, post.split_threshold) == (
        choice.raw_threshold,
        choice.split_threshold,
    )
    assert card.thresholds is not None and card.thresholds["criterion"] == "efficiency_lat"
    assert card.thresholds["step"] == trained.step and len(card.thresholds["table"]) > 1
    sidecar = json.loads(path.with_name("tiny.card.json").read_text(encoding="utf-8"))
    assert sidecar["thresholds"]["raw_threshold"] == choice.raw_threshold
    # a run config without a postprocess section runs the model at the card's thresholds
    localizer = build_localizer(config_from_dict({}), override=path, device="cpu")
    assert localizer.postprocess == choice.postprocess


def test_out_of_range_thresholds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LiveDecodeError, match=r"split-threshold 1\.5"):
        Trainer(_tiny_config(), tmp_path, device="cpu", split_threshold=1.5)


def test_train_cli_threshold_flags_override_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    tiny = {
        "model": {"size": "custom", "filters": 8},
        "training": {"crop_px": 16, "batch_size": 4, "eval_samples": 8},
    }
    config.write_text(yaml.safe_dump(tiny), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", str(config), "--out", str(out), "--steps", "2", "--threads", "1"]
    assert main([*argv, "--raw-threshold", "0.35", "--split-threshold", "0.55"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])
    assert summary["thresholds"]["given"] == ["raw", "split"]
    assert summary["thresholds"]["raw_threshold"] == 0.35
    post = load_model(out / "model.pt")[1].parsed_config.postprocess
    assert (post.raw_threshold, post.split_threshold) == (0.35, 0.55)
    assert main([*argv, "--overwrite", "--raw-threshold", "0"]) == 2
    assert "in (0, 1]" in capsys.readouterr().err


def test_thresholds_cli_rechooses_a_decode_models_pair(
    trained: Trainer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A saved model with a poor pair in its card gets the search's pair, without retraining."""
    path = tmp_path / "poor.pt"
    poor = _with_post(trained.cfg, 0.02, 0.02)
    save_model(path, trained.net, make_card("poor", poor, trained.net, training_steps=160))
    argv = ["thresholds", str(path), "--windows", str(WINDOWS), "--threads", "1", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    card = load_model(path)[1]
    post = card.parsed_config.postprocess
    assert (post.raw_threshold, post.split_threshold) == (
        result["raw_threshold"],
        result["split_threshold"],
    )
    assert result["raw_threshold"] > 0.02 and result["score"] > result["default_score"] + 0.1
    assert card.thresholds is not None and tuple(card.thresholds["default"]) == (0.02, 0.02)
    assert card.metrics["step"] == 160 and card.metrics["jaccard"] > 0
