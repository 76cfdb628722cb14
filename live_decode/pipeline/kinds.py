"""Network kinds: the built-in DECODE and Deep-STORM, and any kind an installed package adds.

A kind is a :class:`ModelKind`: how to build its untrained network from a model card, how to wrap
a loaded network as a :class:`~live_decode.model.seam.NetworkLocalizer`, and (optionally) how to
train one from a config. ``model.kind`` in a config picks the trainer; the card's ``kind`` picks
the network and localizer when a model is loaded (cards without one are DECODE's).

A third network is a package that declares an entry point in the group ``live_decode.models``
whose object is a :class:`ModelKind` (its ``name`` is the entry point's name)::

    [project.entry-points."live_decode.models"]
    mynet = "my_package.kind:MYNET"
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from live_decode.config import Config, PostprocessConfig
from live_decode.errors import ConfigError, ModelCardError
from live_decode.inference.engine import Localizer, SpeedOptions
from live_decode.model.card import ModelCard
from live_decode.model.checkpoint import build_network, load_network
from live_decode.model.seam import NetworkLocalizer

log = logging.getLogger("live_decode.pipeline.kinds")

ENTRY_POINT_GROUP = "live_decode.models"


@dataclass(frozen=True)
class LocalizerOptions:
    """How a loaded network runs: device, DECODE's thresholds, autocast, engine speed options.

    ``threshold`` is the detection threshold a user asked for (``evaluate --threshold``); each
    kind applies it to its own detector (DECODE: ``raw_threshold``).
    """

    device: torch.device
    postprocess: PostprocessConfig | None = None
    amp: bool = True
    speed: SpeedOptions | None = None
    threshold: float | None = None


class TrainerLike(Protocol):
    """What ``live-decode train`` drives (:class:`live_decode.training.trainer.Trainer`)."""

    step: int
    elapsed_s: float
    device: torch.device
    net: nn.Module

    @property
    def checkpoint_path(self) -> Path: ...

    def load_checkpoint(self) -> None: ...

    def run(
        self,
        max_steps: int,
        time_budget_s: float | None = None,
        on_progress: Callable[[int, float, dict[str, float] | None], None] | None = None,
    ) -> dict[str, float]: ...


class TrainerFactory(Protocol):
    def __call__(
        self,
        cfg: Config,
        out_dir: Path,
        *,
        device: str,
        name: str,
        temporal_context: bool | None,
        init_from: Path | None,
        raw_threshold: float | None = None,
        split_threshold: float | None = None,
    ) -> TrainerLike: ...


@dataclass(frozen=True)
class ModelKind:
    """One kind of network, as the worker, ``evaluate`` and ``train`` use it."""

    name: str
    build_network: Callable[[ModelCard], nn.Module]
    build_localizer: Callable[[nn.Module, ModelCard, LocalizerOptions], NetworkLocalizer]
    trainer: TrainerFactory | None = None
    description: str = ""


# ------------------------------------------------------------------ the built-in kinds
def _decode_localizer(net: nn.Module, card: ModelCard, opts: LocalizerOptions) -> NetworkLocalizer:
    from live_decode.model.network import DecodeNet

    if not isinstance(net, DecodeNet):
        raise ModelCardError(f"model '{card.name}': a DECODE card with a {type(net).__name__}")
    post = opts.postprocess
    if opts.threshold is not None:
        base = post or card.parsed_config.postprocess
        post = base.model_copy(update={"raw_threshold": opts.threshold})
    return Localizer(net, card, opts.device, postprocess=post, amp=opts.amp, speed=opts.speed)


def _deepstorm_localizer(
    net: nn.Module, card: ModelCard, opts: LocalizerOptions
) -> NetworkLocalizer:
    from live_decode.inference.deepstorm import DeepStormLocalizer
    from live_decode.model.deepstorm import DeepStormNet

    if not isinstance(net, DeepStormNet):
        raise ModelCardError(f"model '{card.name}': a Deep-STORM card with a {type(net).__name__}")
    return DeepStormLocalizer(net, card, opts.device, threshold=opts.threshold)


def _decode_trainer(
    cfg: Config,
    out_dir: Path,
    *,
    device: str,
    name: str,
    temporal_context: bool | None,
    init_from: Path | None,
    raw_threshold: float | None = None,
    split_threshold: float | None = None,
) -> TrainerLike:
    from live_decode.training.trainer import Trainer

    return Trainer(
        cfg, out_dir, device, name, temporal_context, init_from, raw_threshold, split_threshold
    )


def _deepstorm_trainer(
    cfg: Config,
    out_dir: Path,
    *,
    device: str,
    name: str,
    temporal_context: bool | None,
    init_from: Path | None,
    raw_threshold: float | None = None,
    split_threshold: float | None = None,
) -> TrainerLike:
    from live_decode.training.deepstorm import DeepStormTrainer

    if init_from is not None:
        raise ConfigError("--init-from is not supported for Deep-STORM models; train from scratch")
    if split_threshold is not None:
        raise ConfigError(
            "--split-threshold is DECODE's (a second emitter beside a detection); a Deep-STORM "
            "model has one detection threshold: give it with --threshold, or leave it to the "
            "automatic choice"
        )
    # raw_threshold is the detection threshold (``train --threshold``): Deep-STORM's own
    return DeepStormTrainer(cfg, out_dir, device, name, threshold=raw_threshold)


DECODE = ModelKind(
    "decode",
    build_network,
    _decode_localizer,
    _decode_trainer,
    "DECODE (Speiser et al. 2021): temporal-context U-Nets, per-pixel detection + offsets",
)
DEEPSTORM = ModelKind(
    "deepstorm",
    build_network,
    _deepstorm_localizer,
    _deepstorm_trainer,
    "Deep-STORM (Nehme et al. 2018): one frame → upsampled emitter-density image",
)
BUILTIN = {k.name: k for k in (DECODE, DEEPSTORM)}


# ------------------------------------------------------------------ discovery
def plugin_kinds() -> dict[str, ModelKind]:
    """The kinds installed packages declare (entry point group ``live_decode.models``).

    An entry point that cannot be loaded, is no :class:`ModelKind`, disagrees with its own
    name or shadows a built-in kind is skipped with a logged warning that names it.
    """
    found: dict[str, ModelKind] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name} = {ep.value}"
        try:
            kind = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others: reported
            log.warning("%s cannot be loaded (%s); it is skipped", where, exc)
            continue
        if not isinstance(kind, ModelKind):
            log.warning("%s is a %s, not a ModelKind; skipped", where, type(kind).__name__)
        elif kind.name != ep.name:
            log.warning("%s names its kind %r: they must agree; skipped", where, kind.name)
        elif kind.name in BUILTIN:
            log.warning("%s would replace the built-in kind %r; skipped", where, kind.name)
        else:
            found[kind.name] = kind
    return found


def available_kinds() -> dict[str, ModelKind]:
    """Every kind: built-in first, then the plugins'."""
    return {**BUILTIN, **plugin_kinds()}


def get_kind(name: str) -> ModelKind:
    """The kind called ``name``.

    Raises
    ------
    ModelCardError
        If no built-in kind or installed plugin has that name (the known ones are listed).
    """
    if name in BUILTIN:
        return BUILTIN[name]
    kinds = available_kinds()
    if name not in kinds:
        raise ModelCardError(
            f"unknown model kind {name!r}; known: {', '.join(kinds)}. A kind of another package "
            f"is found once that package is installed (entry point group {ENTRY_POINT_GROUP})"
        )
    return kinds[name]


def load_localizer(path: Path, opts: LocalizerOptions) -> NetworkLocalizer:
    """Load the model at ``path`` (any kind) and wrap it for inference on ``opts.device``."""
    from live_decode.model.card import read_card

    kind = get_kind(read_card(path).kind)
    net, card = load_network(path, opts.device, kind.build_network)
    return kind.build_localizer(net, card, opts)
