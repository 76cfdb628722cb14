from __future__ import annotations

from pathlib import Path

from live_decode.config import Config, ModelConfig, TrainingConfig
from live_decode.model.checkpoint import load_model
from live_decode.training.trainer import Trainer


def _tiny_config() -> Config:
    return Config(
        model=ModelConfig(size="custom", filters=8),
        training=TrainingConfig(
            crop_px=16,
            batch_size=8,
            lr=3e-3,
            lr_step_every=1000,
            eval_samples=16,
            eval_every=1000,
            checkpoint_every=1000,
            density_range_per_um2=(1.0, 3.0),
        ),
    )


def test_a_few_steps_on_tiny_crops_reduce_the_held_out_loss(tmp_path: Path) -> None:
    trainer = Trainer(_tiny_config(), tmp_path, device="cpu", name="tiny")
    before = trainer.evaluate()["loss"]
    after = trainer.run(max_steps=40)["loss"]
    assert after < 0.5 * before
    _net, card = load_model(tmp_path / "tiny.pt")
    assert card.training_steps == 40 and card.metrics["loss"] == round(after, 4)


def test_resume_continues_from_the_checkpoint(tmp_path: Path) -> None:
    trainer = Trainer(_tiny_config(), tmp_path, device="cpu", name="tiny")
    trainer.run(max_steps=3)
    again = Trainer(_tiny_config(), tmp_path, device="cpu", name="tiny")
    again.load_checkpoint()
    assert again.step == 3
    again.run(max_steps=5)
    assert again.step == 5
