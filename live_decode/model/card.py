"""The model card: what a network was trained for, how, and how well (no torch needed).

The card travels inside the model file and beside it as ``<name>.card.json``;
:func:`read_card` reads that sidecar without importing torch, so a supervisor can check a model
against a camera before anything heavy is loaded or any acquisition starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from live_decode.config import Config
from live_decode.errors import ModelCardError
from live_decode.model.scaling import Scaling


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to use a model correctly, and its measured quality."""

    name: str
    config: dict[str, Any]  # the full simulation/training config, Config.model_dump(mode="json")
    scaling: dict[str, float]
    filters: int
    temporal_context: bool
    n_parameters: int
    training_steps: int = 0
    training_time_s: float = 0.0
    device: str = "cpu"
    metrics: dict[str, float] = field(default_factory=dict)
    live_decode_version: str = "0.1.0"
    init_from: str | None = None  # the model this one was fine-tuned from (its card's name)
    # How config.postprocess was chosen: criterion, scores, the search table (ThresholdChoice)
    thresholds: dict[str, Any] | None = None
    adaptation: dict[str, Any] | None = None
    """``live-decode adapt``: the setup it started from, the fitted PSF/background, likelihoods."""
    density_recount: list[dict[str, Any]] | None = None
    """``live-decode fit``: each round of the density recount (the network's count of the movie,
    corrected for its held-out undercount; the setup density and training range before/after)."""
    # The network kind (live_decode.model.kinds); cards written before kinds existed are DECODE's.
    kind: str = "decode"

    @property
    def parsed_config(self) -> Config:
        return Config.model_validate(self.config)

    @property
    def parsed_scaling(self) -> Scaling:
        return Scaling(**self.scaling)

    def summary(self) -> str:
        """One line: model, PSF, pixel size, camera."""
        cfg = self.parsed_config
        context = "temporal" if self.temporal_context else "single-frame"
        net = "" if self.kind == "decode" else f"{self.kind}, "
        return (
            f"{self.name}: {net}{context}, {self.filters} filters, PSF {cfg.psf.kind}, "
            f"{cfg.camera.pixel_size_nm:g} nm px, {cfg.camera.kind}, "
            f"{self.training_steps} steps"
        )


def card_from_dict(data: Any, path: Path) -> ModelCard:
    """Validate a card read from ``path`` (its embedded config included)."""
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: the model card is missing; is this a live_decode model?")
    try:
        card = ModelCard(**data)
        card.parsed_config  # noqa: B018 - validates the embedded config
        card.parsed_scaling  # noqa: B018
    except (TypeError, ValidationError) as exc:
        raise ModelCardError(
            f"{path}: invalid model card ({exc}); re-train or re-export the model"
        ) from None
    return card


def card_path(model_path: str | Path) -> Path:
    """The ``<name>.card.json`` sidecar of a model file."""
    path = Path(model_path)
    return path.with_name(path.stem + ".card.json")


def read_card(model_path: str | Path) -> ModelCard:
    """The card of the model at ``model_path``: from its JSON sidecar, else from the model file.

    Only the fallback (a model file without its sidecar) imports torch.
    """
    path = Path(model_path)
    sidecar = card_path(path)
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelCardError(f"{sidecar}: cannot read the model card ({exc})") from None
        return card_from_dict(data, sidecar)
    from live_decode.model.checkpoint import read_model_file

    return read_model_file(path)[0]
