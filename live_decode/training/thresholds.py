"""Detection thresholds chosen for a trained network on a simulated validation set of its setup.

The post-processing has two thresholds (:class:`~live_decode.config.PostprocessConfig`):
``raw_threshold`` (a candidate's integrated probability must reach it) and ``split_threshold``
(a second emitter next to a local maximum). On dense data the split threshold decides as much
as training does, and the best pair depends on the network and the density. So after training,
validation windows of the setup are simulated once (at its density, with the training's mix of
structured windows), the network runs once, and only the cheap post-processing is repeated over a
grid of pairs. The pair with the best SMLM-2016 efficiency is chosen — lateral efficiency
(``efficiency_lat``: Jaccard and lateral RMSE, α = 1 %/nm) for a 2-D model, volumetric
(``efficiency_vol``: the mean of lateral and axial, α = 0.5 %/nm axial) for a 3-D one; ties go to
the pair found first in the grid (low raw, then low split thresholds).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from live_decode.config import Config, PostprocessConfig
from live_decode.errors import LiveDecodeError
from live_decode.model.network import DecodeNet
from live_decode.model.postprocess import localize
from live_decode.model.scaling import Scaling
from live_decode.simulation.batch import WindowSimulator
from live_decode.training.validation import HeldOutSet, predict_windows, score

RAW_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
SPLIT_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Candidate thresholds (split 1.0: never split, p ≤ 1). The config's own pair is always added."""
SEED_OFFSET = 20_011  # validation windows differ from the training and held-out ones


class DetectionChoice(Protocol):
    """What a trainer records of its kind's threshold choice (card, log, ``train`` summary)."""

    @property
    def criterion(self) -> str: ...

    @property
    def score(self) -> float: ...

    @property
    def given(self) -> tuple[str, ...]: ...

    def summary(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...

    def brief(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen thresholds and the search behind them (what the model card records).

    Attributes
    ----------
    raw_threshold, split_threshold
        The chosen pair.
    criterion
        The metric maximised: ``efficiency_lat`` (2-D) or ``efficiency_vol`` (3-D).
    score
        Its value at the chosen pair; ``default_score`` at the config's pair, on the same data.
    density_per_um2, n_windows, window_px
        The validation set: mean emitters per µm² per frame, windows, window side.
    given
        Which thresholds were given instead of searched (``raw``/``split``).
    table
        One row per pair tried: thresholds, Jaccard, RMSE and efficiencies, counts.
    """

    raw_threshold: float
    split_threshold: float
    criterion: str
    score: float
    default_score: float
    default: tuple[float, float]
    density_per_um2: float
    n_windows: int
    window_px: int
    given: tuple[str, ...] = ()
    step: int | None = None
    table: list[dict[str, float]] = field(default_factory=list)

    @property
    def postprocess(self) -> PostprocessConfig:
        return PostprocessConfig(
            raw_threshold=self.raw_threshold, split_threshold=self.split_threshold
        )

    def summary(self) -> str:
        """One line, e.g. ``raw 0.2, split 0.5: efficiency_lat 0.61 (0.55 at 0.1/0.6)``."""
        if len(self.given) == 2:
            return (
                f"thresholds raw {self.raw_threshold:g}, split {self.split_threshold:g} (given): "
                f"{self.criterion} {self.score:.3f}"
            )
        return (
            f"thresholds raw {self.raw_threshold:g}, split {self.split_threshold:g}: "
            f"{self.criterion} {self.score:.3f} ({self.default_score:.3f} at "
            f"{self.default[0]:g}/{self.default[1]:g}) on {self.n_windows} simulated windows at "
            f"{self.density_per_um2:g} µm⁻²"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the model card (NaN stays NaN: strict_json writes it as null)."""
        return asdict(self)

    def brief(self) -> dict[str, Any]:
        """The choice without its table (training log, ``train``'s summary)."""
        return {
            "raw_threshold": self.raw_threshold,
            "split_threshold": self.split_threshold,
            "criterion": self.criterion,
            "score": self.score,
            "default_score": self.default_score,
            "given": list(self.given),
        }


def check_given_threshold(flag: str, value: float | None, meaning: str) -> None:
    """Refuse a threshold given on the command line outside (0, 1]; ``meaning`` says what it
    is a fraction of (the message names the flag and the range)."""
    if value is not None and not 0.0 < value <= 1.0:
        raise LiveDecodeError(
            f"{flag} {value}: {meaning} in (0, 1]; give one in that range or leave it to the "
            "automatic choice."
        )


def criterion_for(scaling: Scaling) -> str:
    """The metric the thresholds maximise: volumetric efficiency in 3-D, else lateral."""
    return "efficiency_vol" if scaling.is_3d else "efficiency_lat"


def validation_set(
    cfg: Config,
    density_per_um2: float | None = None,
    n_windows: int | None = None,
    device: torch.device | str = "cpu",
    seed: int | None = None,
    sim: WindowSimulator | None = None,
    *,
    n_frames: int = 3,
    structured: bool = True,
) -> HeldOutSet:
    """Validation windows of the setup: training crops at its density, the training's structures.

    Defaults: ``cfg.emitters.density_per_um2``, ``cfg.training.eval_samples`` windows, a seed
    derived from ``cfg.training.seed`` (other than the training's and the held-out set's).
    ``n_frames`` (when no ``sim`` is given): frames per window (DECODE 3, Deep-STORM 1);
    ``structured=False`` for a kind whose training simulates no structured windows.
    """
    t = cfg.training
    if sim is None:
        sim = WindowSimulator(cfg, (t.crop_px, t.crop_px), n_frames=n_frames, device=device)
    density = cfg.emitters.density_per_um2 if density_per_um2 is None else density_per_um2
    n = t.eval_samples if n_windows is None else n_windows
    base = t.seed + SEED_OFFSET if seed is None else seed
    gen = torch.Generator(device=sim.device).manual_seed(base)
    mix = t.structured if structured else None
    return HeldOutSet.simulate(sim, n, density, gen, structured=mix)


def choose_thresholds(
    net: DecodeNet,
    cfg: Config,
    scaling: Scaling | None = None,
    *,
    density_per_um2: float | None = None,
    n_windows: int | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    raw_threshold: float | None = None,
    split_threshold: float | None = None,
    raw_grid: tuple[float, ...] = RAW_GRID,
    split_grid: tuple[float, ...] = SPLIT_GRID,
    sim: WindowSimulator | None = None,
    validation: HeldOutSet | None = None,
) -> ThresholdChoice:
    """Choose ``raw_threshold`` × ``split_threshold`` for ``net`` on simulations of ``cfg``.

    Parameters
    ----------
    net
        The trained network (its device is used unless ``device`` is given).
    cfg
        The setup it was trained for; ``cfg.postprocess`` is the baseline pair, always tried.
    scaling
        The network's scaling; default ``Scaling.from_config(cfg)`` (what training uses).
    density_per_um2, n_windows, seed
        The validation set (see :func:`validation_set`); default: the setup's density.
    raw_threshold, split_threshold
        Given values: not searched (both given: only that pair is scored).
    raw_grid, split_grid
        Candidate values searched.
    sim, validation
        Reuse a simulator or an already simulated validation set.

    Returns
    -------
    ThresholdChoice
        The pair of best efficiency (see the module docstring), its score, the config's pair's
        score on the same data, and the whole table.
    """
    scaling = Scaling.from_config(cfg) if scaling is None else scaling
    dev = next(net.parameters()).device if device is None else torch.device(device)
    if sim is None:
        crop = cfg.training.crop_px
        sim = WindowSimulator(cfg, (crop, crop), n_frames=3, device=dev)
    if validation is None:
        validation = validation_set(cfg, density_per_um2, n_windows, dev, seed, sim)
    b = validation.batch
    out = predict_windows(net, scaling.scale_input(sim.camera.to_photons(b.adu)))
    px = cfg.camera.pixel_size_nm
    frames = torch.arange(out.shape[0])
    criterion = criterion_for(scaling)
    default = (cfg.postprocess.raw_threshold, cfg.postprocess.split_threshold)
    raws = (raw_threshold,) if raw_threshold is not None else grid_with(raw_grid, default[0])
    splits = (
        (split_threshold,) if split_threshold is not None else grid_with(split_grid, default[1])
    )

    def localize_at(row: dict[str, float]) -> np.ndarray:
        post = PostprocessConfig(
            raw_threshold=row["raw_threshold"], split_threshold=row["split_threshold"]
        )
        return localize(out, frames, post, scaling, px)

    best, at_default, table = search_grid(
        [{"raw_threshold": r, "split_threshold": s} for r in raws for s in splits],
        {"raw_threshold": default[0], "split_threshold": default[1]},
        localize_at,
        validation.ground_truth(px),
        criterion,
        is_3d=scaling.is_3d,
    )
    given = tuple(
        name
        for name, value in (("raw", raw_threshold), ("split", split_threshold))
        if value is not None
    )
    density = cfg.emitters.density_per_um2 if density_per_um2 is None else density_per_um2
    return ThresholdChoice(
        raw_threshold=float(best["raw_threshold"]),
        split_threshold=float(best["split_threshold"]),
        criterion=criterion,
        score=float(best[criterion]),
        default_score=float(at_default[criterion]),
        default=default,
        density_per_um2=float(density),
        n_windows=int(out.shape[0]),
        window_px=int(out.shape[-1]),
        given=given,
        table=table,
    )


def search_grid(
    candidates: list[dict[str, float]],
    default: dict[str, float],
    localize_at: Callable[[dict[str, float]], np.ndarray],
    ground_truth: np.ndarray,
    criterion: str,
    *,
    is_3d: bool,
) -> tuple[dict[str, float], dict[str, float], list[dict[str, float]]]:
    """Score the localizations at each candidate setting (and the default's) against the truth.

    Parameters
    ----------
    candidates
        Settings to choose from, in grid order (e.g. ``{"raw_threshold": 0.2, ...}``).
    default
        The configured setting: always scored (appended when it is no candidate), never chosen
        unless it is one.
    localize_at
        Localizations (LOC_DTYPE) of the validation windows at one setting; ``frame`` is the
        window index, as in ``ground_truth``.
    criterion
        The metric maximised (a key of :func:`~live_decode.training.validation.score`).

    Returns
    -------
    best, at_default, table
        The row of the best candidate (the first of equal scores: grids are sorted low to high;
        NaN ranks lowest), the default's row and every row: the setting, then its metrics.
    """
    rows = candidates if default in candidates else [*candidates, default]
    table = [{**row, **score(localize_at(row), ground_truth, is_3d=is_3d)} for row in rows]
    best = max(table[: len(candidates)], key=lambda row: _rank(row[criterion]))
    return best, table[rows.index(default)], table


def grid_with(grid: tuple[float, ...], value: float) -> tuple[float, ...]:
    """``grid`` with ``value`` added, sorted (the configured value is always a candidate)."""
    return tuple(sorted({*grid, value}))


def _rank(value: float) -> float:
    """NaN (no matches at all) ranks below any efficiency."""
    return value if math.isfinite(value) else -math.inf
