"""Saved models with their model card: what the network was trained for, how, and how well.

A model file is a ``torch.save`` dict ``{"format": 1, "card": {...}, "state_dict": {...}}``; the
card is plain JSON-able data and is also written beside the weights as ``<name>.card.json`` so a
person can read it. Loading validates the card and that the weights fit the network it describes.

The card's ``kind`` (``decode`` when absent: cards of before network kinds) says which network
the weights belong to. The built-in kinds are built here; a kind a plugin installs is built by
the plugin's ``build_network`` (:func:`load_network` takes it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from live_decode.config import Config
from live_decode.errors import ModelCardError
from live_decode.model.card import ModelCard, card_from_dict, card_path
from live_decode.model.network import DecodeNet, count_parameters
from live_decode.model.scaling import Scaling
from live_decode.strict_json import write_json

__all__ = [
    "BUILTIN_KINDS",
    "ModelCard",
    "build_network",
    "bundled_model_path",
    "load_model",
    "load_network",
    "make_card",
    "read_model_file",
]

FORMAT_VERSION = 1
BUILTIN_KINDS = ("decode", "deepstorm")


def build_network(card: ModelCard) -> nn.Module:
    """The untrained network a built-in kind's card describes."""
    if card.kind == "decode":
        return DecodeNet(card.filters, card.temporal_context, predict_z=card.parsed_scaling.is_3d)
    if card.kind == "deepstorm":
        from live_decode.model.deepstorm import build_deepstorm

        return build_deepstorm(card.parsed_config.model.deepstorm)
    raise ModelCardError(
        f"model '{card.name}' is of kind {card.kind!r}, which is not built in "
        f"({', '.join(BUILTIN_KINDS)}); install the package that provides it (entry point group "
        "live_decode.models) and load it through live_decode.pipeline.kinds"
    )


def make_card(name: str, config: Config, net: nn.Module, **extra: Any) -> ModelCard:
    """The card of ``net`` (a network with ``kind`` and ``filters``) trained for ``config``."""
    return ModelCard(
        name=name,
        config=config.model_dump(mode="json"),
        scaling=Scaling.from_config(config).to_dict(),
        filters=int(getattr(net, "filters", 0)),
        temporal_context=bool(getattr(net, "temporal_context", False)),
        n_parameters=count_parameters(net),
        kind=str(getattr(net, "kind", "decode")),
        **extra,
    )


def save_model(path: str | Path, net: nn.Module, card: ModelCard) -> None:
    """Write the weights + card to ``path`` and the card alone to ``path.card.json``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT_VERSION, "card": asdict(card), "state_dict": state}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a model file
    write_json(card_path(path), asdict(card))


def read_model_file(path: str | Path) -> tuple[ModelCard, dict[str, torch.Tensor]]:
    """The validated card and the weights (on the CPU) of the model file at ``path``."""
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
    state = blob.get("state_dict")
    if not isinstance(state, dict):
        raise ModelCardError(f"{path}: the model file holds no weights; re-train or re-export it")
    return card, state


def load_network(
    path: str | Path,
    device: str | torch.device = "cpu",
    build: Callable[[ModelCard], nn.Module] | None = None,
) -> tuple[nn.Module, ModelCard]:
    """Load a model of any kind and validate its card; the network is in eval mode on ``device``.

    ``build`` makes the untrained network from the card (default: :func:`build_network`, the
    built-in kinds).
    """
    card, state = read_model_file(path)
    net = (build or build_network)(card)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelCardError(
            f"{path}: the weights do not fit the network the card describes ({exc})"
        ) from None
    return net.to(device).eval(), card


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[DecodeNet, ModelCard]:
    """Load a DECODE model and validate its card (see :func:`load_network` for any kind)."""
    net, card = load_network(path, device)
    if not isinstance(net, DecodeNet):
        raise ModelCardError(
            f"{path}: a {card.kind} model where a DECODE one is needed; load it with "
            "live_decode.pipeline.build.build_localizer (or ld.load_model): they take every kind"
        )
    return net, card


def bundled_model_path(name: str = "demo_lite") -> Path:
    """Path of a model shipped inside the package (``live_decode/bundled/<name>.pt``)."""
    return Path(__file__).resolve().parent.parent / "bundled" / f"{name}.pt"
