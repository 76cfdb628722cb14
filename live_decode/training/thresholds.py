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
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from live_decode.config import Config, PostprocessConfig
from live_decode.model.network import DecodeNet
from live_decode.model.postprocess import localize
from live_decode.model.scaling import Scaling
from live_decode.simulation.batch import WindowSimulator
from live_decode.training.validation import HeldOutSet, predict_windows, score

RAW_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
SPLIT_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Candidate thresholds (split 1.0: never split, p ≤ 1). The config's own pair is always added."""
SEED_OFFSET = 20_011  # validation windows differ from the training and held-out ones


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
) -> HeldOutSet:
    """Validation windows of the setup: training crops at its density, the training's structures.

    Defaults: ``cfg.emitters.density_per_um2``, ``cfg.training.eval_samples`` windows, a seed
    derived from ``cfg.training.seed`` (other than the training's and the held-out set's).
    """
    t = cfg.training
    if sim is None:
        sim = WindowSimulator(cfg, (t.crop_px, t.crop_px), n_frames=3, device=device)
    density = cfg.emitters.density_per_um2 if density_per_um2 is None else density_per_um2
    n = t.eval_samples if n_windows is None else n_windows
    base = t.seed + SEED_OFFSET if seed is None else seed
    gen = torch.Generator(device=sim.device).manual_seed(base)
    return HeldOutSet.simulate(sim, n, density, gen, structured=t.structured)


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
    gt = validation.ground_truth(px)
    frames = torch.arange(out.shape[0])
    criterion = criterion_for(scaling)
    default = (cfg.postprocess.raw_threshold, cfg.postprocess.split_threshold)
    raws = (raw_threshold,) if raw_threshold is not None else _with(raw_grid, default[0])
    splits = (split_threshold,) if split_threshold is not None else _with(split_grid, default[1])
    candidates = [(r, s) for r in raws for s in splits]
    pairs = candidates if default in candidates else [*candidates, default]
    table: list[dict[str, float]] = []
    for raw, split in pairs:
        post = PostprocessConfig(raw_threshold=raw, split_threshold=split)
        metrics = score(localize(out, frames, post, scaling, px), gt, is_3d=scaling.is_3d)
        table.append({"raw_threshold": raw, "split_threshold": split, **metrics})
    # max keeps the first of equal scores: the lowest thresholds (the grids are sorted)
    best = max(table[: len(candidates)], key=lambda row: _rank(row[criterion]))
    at_default = table[pairs.index(default)]
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


def _with(grid: tuple[float, ...], value: float) -> tuple[float, ...]:
    return tuple(sorted({*grid, value}))


def _rank(value: float) -> float:
    """NaN (no matches at all) ranks below any efficiency."""
    return value if math.isfinite(value) else -math.inf
