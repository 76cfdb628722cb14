"""A checkpoint of an earlier setup is taken only when that setup is named (fit's recount)."""

from __future__ import annotations

from pathlib import Path

import pytest

from live_decode.config import Config, EmittersConfig, ModelConfig, TrainingConfig
from live_decode.errors import LiveDecodeError
from live_decode.training.trainer import Trainer


def _config(density: float, top: float) -> Config:
    return Config(
        model=ModelConfig(size="custom", filters=8),
        emitters=EmittersConfig(density_per_um2=density),
        training=TrainingConfig(
            crop_px=16,
            batch_size=2,
            eval_samples=8,
            eval_every=1000,
            checkpoint_every=1000,
            density_range_per_um2=(0.0, top),
        ),
    )


def test_a_checkpoint_of_the_setup_before_a_recount_goes_on_under_the_new_one(
    tmp_path: Path,
) -> None:
    old, new = _config(1.0, 3.0), _config(1.5, 4.5)
    first = Trainer(old, tmp_path, device="cpu")
    first.train_step()
    first.save_checkpoint()

    resumed = Trainer(new, tmp_path, device="cpu")
    with pytest.raises(LiveDecodeError, match=r"emitters\.density_per_um2: 1\.0 → 1\.5"):
        resumed.load_checkpoint()
    with pytest.raises(LiveDecodeError, match="different config"):  # not the earlier one either
        resumed.load_checkpoint(earlier=_config(1.0, 4.5))
    resumed.load_checkpoint(earlier=old)
    assert resumed.step == 1 and resumed.cfg == new
    resumed.save_checkpoint()  # now it is the new setup's
    Trainer(new, tmp_path, device="cpu").load_checkpoint()
