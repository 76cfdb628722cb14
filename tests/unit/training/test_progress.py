"""The up-front training-time estimate and the progress lines of ``<out>/train_log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from live_decode import strict_json
from live_decode.cli.main import main
from live_decode.config import Config, ModelConfig, TrainingConfig
from live_decode.training import progress
from live_decode.training.progress import Estimate
from live_decode.training.trainer import Trainer


def _tiny_config(**training: Any) -> Config:
    base = {"crop_px": 16, "batch_size": 4, "eval_samples": 8, "eval_every": 5, "log_every": 5}
    return Config(
        model=ModelConfig(size="custom", filters=8),
        training=TrainingConfig(**{**base, **training}),
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [strict_json.loads_strict(line) for line in path.read_text("utf-8").splitlines()]


def test_the_estimate_leaves_out_the_first_step_and_projects_the_budget() -> None:
    est = Estimate.from_timing([10.0, 1.0, 1.0, 1.0], 8, "cpu", 0, 100, 30.0)
    assert est.steps_per_s == pytest.approx(1.0) and est.samples_per_s == pytest.approx(8.0)
    assert est.steps_eta_s == pytest.approx(100.0) and est.steps_in_budget == 30
    assert "estimated 1.7 min for 100 steps on cpu (1 steps/s" in est.message()
    assert "the 0.5 min budget reaches step 30 of 100" in est.message()
    short = Estimate.from_timing([1.0, 3.0], 8, "cpu", 40, 50, None)  # too few to leave one out
    assert short.steps_per_s == pytest.approx(0.5) and short.steps_eta_s == pytest.approx(20.0)
    assert short.steps_in_budget is None and "budget" not in short.message()


def test_a_run_logs_start_estimate_progress_evaluations_and_end(tmp_path: Path) -> None:
    trainer = Trainer(_tiny_config(), tmp_path, device="cpu", name="tiny")
    trainer.run(max_steps=12)
    assert trainer.estimate is not None and trainer.estimate.steps_per_s > 0
    lines = _lines(tmp_path / "train_log.jsonl")
    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("estimate") == 1
    assert kinds.count("thresholds") == 1
    steps = [line["step"] for line in lines]
    assert steps == sorted(steps) and steps[-1] == 12
    prog = [line for line in lines if line["kind"] == "progress"]
    assert [p["step"] for p in prog] == [5, 10]
    for p in prog:
        assert p["loss"] > 0 and p["samples_per_s"] > 0 and p["eta_s"] >= 0 and p["lr"] > 0
    evals = [line for line in lines if line["kind"] == "eval"]
    assert [e["step"] for e in evals] == [5, 10, 12] and evals[-1]["final"] is True
    est = next(line for line in lines if line["kind"] == "estimate")
    assert est["step"] == 6 and est["start_step"] == 0 and est["max_steps"] == 12

    again = Trainer(_tiny_config(), tmp_path, device="cpu", name="tiny")
    again.load_checkpoint()
    again.run(max_steps=15)  # a resumed run appends
    steps = [line["step"] for line in _lines(tmp_path / "train_log.jsonl")]
    assert steps == sorted(steps) and steps[-1] == 15 and len(steps) > len(lines)


def test_slow_steps_still_log_every_so_many_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    Trainer(_tiny_config(log_every=1000), tmp_path, device="cpu").run(max_steps=3)
    prog = [line for line in _lines(tmp_path / "train_log.jsonl") if line["kind"] == "progress"]
    assert [p["step"] for p in prog] == [1, 2, 3]


def test_train_cli_reports_the_estimate_and_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    tiny = {"model": {"size": "custom", "filters": 8}, "training": {"crop_px": 16}}
    tiny["training"].update(batch_size=4, eval_samples=8)
    config.write_text(yaml.safe_dump(tiny), encoding="utf-8")
    out = tmp_path / "run"
    argv = ["train", str(config), "--out", str(out), "--steps", "3", "--threads", "1"]
    assert main([*argv, "--minutes", "10"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])
    est = summary["estimate"]
    assert est["max_steps"] == 3 and est["steps_per_s"] > 0 and est["steps_in_budget"] == 3
    assert "for 3 steps on cpu" in est["message"] and "10 min budget" in est["message"]
    assert summary["log"] == str(out / "train_log.jsonl") and (out / "train_log.jsonl").is_file()
