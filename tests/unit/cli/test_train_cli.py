"""``live-decode train`` on a tiny network: model + card, resume, and runs that must not be lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from live_decode.cli.main import main
from live_decode.model.checkpoint import load_model

TINY: dict[str, Any] = {
    "model": {"size": "custom", "filters": 8},
    "training": {
        "crop_px": 16,
        "batch_size": 4,
        "eval_samples": 8,
        "eval_every": 2,
        "checkpoint_every": 2,
    },
}


def _config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    data = {**TINY, **sections}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _train(config: Path, out: Path, *extra: str) -> int:
    argv = ["train", str(config), "--out", str(out), "--name", "tiny", "--threads", "1"]
    return main([*argv, *extra])


def test_train_writes_model_card_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _config(tmp_path), tmp_path / "run"
    assert _train(config, out, "--steps", "2", "--device", "cpu") == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])  # after the progress bar
    assert summary["model"] == str(out / "tiny.pt") and "jaccard" in summary
    _net, card = load_model(out / "tiny.pt")
    assert card.training_steps == 2 and card.temporal_context
    assert (out / "tiny.card.json").is_file() and (out / "snapshots" / "tiny_000002.pt").is_file()

    assert _train(config, out, "--steps", "4", "--resume") == 0  # a larger budget is allowed
    assert load_model(out / "tiny.pt")[1].training_steps == 4


def test_an_existing_training_is_not_overwritten_by_accident(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, out = _config(tmp_path), tmp_path / "run"
    assert _train(config, out, "--steps", "2") == 0
    capsys.readouterr()
    assert _train(config, out, "--steps", "2") == 2
    assert "--resume" in capsys.readouterr().err
    assert _train(config, out, "--steps", "2", "--overwrite") == 0


def test_resume_refuses_other_data_or_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert _train(_config(tmp_path), out, "--resume") == 2
    assert "No checkpoint" in capsys.readouterr().err

    assert _train(_config(tmp_path), out, "--steps", "2") == 0
    capsys.readouterr()
    other_camera = _config(tmp_path, camera={"em_gain": 100})
    assert _train(other_camera, out, "--steps", "4", "--resume") == 2
    assert "camera.em_gain: 300.0 → 100.0" in capsys.readouterr().err
    assert _train(_config(tmp_path), out, "--steps", "4", "--resume", "--single-frame") == 2
    assert "temporal_context" in capsys.readouterr().err
    assert load_model(out / "tiny.pt")[1].training_steps == 2  # the refused runs changed nothing
