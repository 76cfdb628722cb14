"""``live-decode thresholds``: the trainer's scratch folder outlives every use of the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from live_decode.model.checkpoint import bundled_model_path
from live_decode.pipeline.thresholds import rechoose_thresholds
from live_decode.training.thresholds import DetectionChoice
from live_decode.training.trainer import Trainer


def test_the_scratch_folder_exists_while_the_trainer_chooses_and_is_gone_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[Path, bool]] = []
    choose = Trainer.choose_detection
    measure = Trainer.held_out_metrics

    def choose_detection(self: Trainer, *args: Any, **kwargs: Any) -> DetectionChoice:
        seen.append((self.out_dir, self.out_dir.is_dir()))
        return choose(self, *args, **kwargs)

    def held_out_metrics(self: Trainer) -> dict[str, float]:
        seen.append((self.out_dir, self.out_dir.is_dir()))
        return measure(self)

    monkeypatch.setattr(Trainer, "choose_detection", choose_detection)
    monkeypatch.setattr(Trainer, "held_out_metrics", held_out_metrics)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = rechoose_thresholds(bundled_model_path(), write=False, n_windows=4)
    finally:
        torch.set_num_threads(threads)
    assert result.path is None
    assert [exists for _, exists in seen] == [True, True]  # both uses inside the folder's life
    assert not seen[0][0].exists()  # and it is removed afterwards
