"""Saved models with their model card: what the network was trained for, how, and how well.

A model file is a ``torch.save`` dict ``{"format": 1, "card": {...}, "state_dict": {...}}``; the
card is plain JSON-able data and is also written beside the weights as ``<name>.card.json`` so a
person can read it. Loading validates the card and that the weights fit the network it describes.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from live_decode.config import Config
from live_decode.errors import ModelCardError
from live_decode.model.card import ModelCard, card_from_dict, card_path
from live_decode.model.network import DecodeNet, count_parameters
from live_decode.model.scaling import Scaling
from live_decode.strict_json import write_json

__all__ = ["ModelCard", "build_network", "bundled_model_path", "load_model", "make_card"]

FORMAT_VERSION = 1


def build_network(card: ModelCard) -> DecodeNet:
    return DecodeNet(card.filters, card.temporal_context, predict_z=card.parsed_scaling.is_3d)


def make_card(name: str, config: Config, net: DecodeNet, **extra: Any) -> ModelCard:
    return ModelCard(
        name=name,
        config=config.model_dump(mode="json"),
        scaling=Scaling.from_config(config).to_dict(),
        filters=net.filters,
        temporal_context=net.temporal_context,
        n_parameters=count_parameters(net),
        **extra,
    )


def save_model(path: str | Path, net: DecodeNet, card: ModelCard) -> None:
    """Write the weights + card to ``path`` and the card alone to ``path.card.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT_VERSION, "card": asdict(card), "state_dict": state}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a model file
    write_json(card_path(path), asdict(card))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[DecodeNet, ModelCard]:
    """Load a model and validate its card. The network is in eval mode on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise ModelCardError(f"{path}: model file not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise ModelCardError(f"{path}: cannot read the model file ({exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
        raise ModelCardError(
            f"{path}: not a live_decode model file of format {FORMAT_VERSION}; "
            "train one with `live-decode train CONFIG`"
        )
    card = card_from_dict(blob.get("card"), path)
    net = build_network(card)
    try:
        net.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError) as exc:
        raise ModelCardError(
            f"{path}: the weights do not fit the network the card describes ({exc})"
        ) from None
    return net.to(device).eval(), card


def bundled_model_path(name: str = "demo_lite") -> Path:
    """Path of a model shipped inside the package (``live_decode/bundled/<name>.pt``)."""
    return Path(__file__).resolve().parent.parent / "bundled" / f"{name}.pt"
