"""Re-choose a trained model's detection thresholds without retraining; rewrite its card.

What the trainer does at the end of training (:meth:`~live_decode.training.trainer.Trainer.
choose_detection`: DECODE's raw/split pair, Deep-STORM's ``model.deepstorm.threshold``), done
again on a saved model: the kind's trainer is built for the card's config, takes the model's
weights, chooses on fresh validation windows of the setup, and re-measures the card's held-out
metrics (the training's held-out set, same seed) at the new thresholds. Useful for models
trained before a kind chose its thresholds, or for another density than the setup's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from live_decode.errors import LiveDecodeError
from live_decode.model.card import ModelCard
from live_decode.model.checkpoint import load_network, save_model
from live_decode.pipeline.kinds import get_kind
from live_decode.training.thresholds import DetectionChoice
from live_decode.training.trainer import Trainer


@dataclass(frozen=True)
class Rechosen:
    """A model's card before and after its thresholds were chosen again."""

    choice: DetectionChoice
    before: ModelCard
    card: ModelCard
    path: Path | None  # where the model was written (None: not written)


def rechoose_thresholds(
    model: Path,
    *,
    out: Path | None = None,
    write: bool = True,
    device: str | torch.device = "cpu",
    density_per_um2: float | None = None,
    n_windows: int | None = None,
    threshold: float | None = None,
    split_threshold: float | None = None,
) -> Rechosen:
    """Choose the detection thresholds of the model at ``model`` again and write its card.

    Parameters
    ----------
    model
        A trained model file (any kind whose trainer is a
        :class:`~live_decode.training.trainer.Trainer`: DECODE, Deep-STORM).
    out
        Where to write the model with its new card (default: ``model`` itself, and its
        ``.card.json`` sidecar); ``write=False`` writes nothing.
    density_per_um2, n_windows
        Density of the validation windows (default: the setup's, ``emitters.density_per_um2``)
        and how many (default: ``training.eval_samples``; more make the choice less noisy).
    threshold, split_threshold
        Given values instead of a search, as ``train --threshold/--split-threshold``.

    Raises
    ------
    LiveDecodeError
        The model's kind has no trainer here, or ``split_threshold`` for a kind without one.
    """
    net, before = load_network(model, device)
    kind = get_kind(before.kind)
    if kind.trainer is None:
        raise LiveDecodeError(
            f"{model}: model kind {kind.name!r} has no trainer here, so no threshold choice"
        )
    cfg = before.parsed_config
    # The trainer writes nothing unless run, but it holds the folder: it lives as long as the
    # trainer is used (a log or checkpoint write would otherwise recreate a deleted one).
    with tempfile.TemporaryDirectory() as scratch:
        trainer = kind.trainer(
            cfg,
            Path(scratch),
            device=str(device),
            name=before.name,
            temporal_context=before.temporal_context,
            init_from=None,
            raw_threshold=threshold,
            split_threshold=split_threshold,
        )
        if not isinstance(trainer, Trainer):
            raise LiveDecodeError(
                f"{model}: the trainer of model kind {kind.name!r} does not choose thresholds"
            )
        trainer.net.load_state_dict(net.state_dict())
        trainer.scaling = before.parsed_scaling  # the input scaling the weights were trained with
        trainer.step = before.training_steps
        choice = trainer.choose_detection(density_per_um2, n_windows)
        metrics = {k: round(v, 4) for k, v in trainer.held_out_metrics().items()}
        card = replace(
            before,
            config=trainer.card_config().model_dump(mode="json"),
            thresholds=choice.to_dict(),
            metrics={**metrics, "step": before.training_steps},
        )
    target = model if out is None else out
    if write:
        save_model(target, net, card)
    return Rechosen(choice, before, card, target if write else None)
