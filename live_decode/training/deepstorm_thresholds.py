"""Deep-STORM's detection threshold chosen on a simulated validation set of its setup.

As DECODE's (:mod:`.thresholds`): after training, single-frame validation windows of the setup
are simulated once at its density, the network runs once, and only the cheap local-maximum
detection (:func:`~live_decode.model.deepstorm_post.localize_density`) is repeated over a grid of
``model.deepstorm.threshold`` values (the 3×3 density mass a maximum needs, in units of one
emitter's spike). The threshold of best lateral efficiency (Jaccard and RMSE, SMLM 2016) is
chosen; ties go to the lowest. The grid search and the validation set are :mod:`.thresholds`'.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from live_decode.config import Config
from live_decode.model.deepstorm import DeepStormNet
from live_decode.model.deepstorm_post import localize_density
from live_decode.model.scaling import Scaling
from live_decode.simulation.batch import WindowSimulator
from live_decode.training.thresholds import grid_with, search_grid, validation_set
from live_decode.training.validation import HeldOutSet

THRESHOLD_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Candidate thresholds (fractions of one spike); the config's own is always added."""
CRITERION = "efficiency_lat"  # Deep-STORM is 2-D


@dataclass(frozen=True)
class DeepStormThresholdChoice:
    """The chosen ``model.deepstorm.threshold`` and the search behind it (the card records it).

    Attributes
    ----------
    threshold
        The chosen threshold (fraction of one emitter's spike).
    criterion, score, default_score, default
        The metric maximised (``efficiency_lat``), its value at the chosen threshold and at the
        config's one (``default``), on the same windows.
    density_per_um2, n_windows, window_px
        The validation set: emitters per µm² per frame, windows, window side (camera pixels).
    given
        ``("threshold",)`` when the threshold was given instead of searched.
    table
        One row per threshold tried: the threshold, Jaccard, RMSE, efficiencies, counts.
    """

    threshold: float
    criterion: str
    score: float
    default_score: float
    default: float
    density_per_um2: float
    n_windows: int
    window_px: int
    given: tuple[str, ...] = ()
    step: int | None = None
    table: list[dict[str, float]] = field(default_factory=list)

    def config_with(self, cfg: Config) -> Config:
        """``cfg`` with this threshold as ``model.deepstorm.threshold`` (what the card carries)."""
        ds = cfg.model.deepstorm.model_copy(update={"threshold": self.threshold})
        return cfg.model_copy(update={"model": cfg.model.model_copy(update={"deepstorm": ds})})

    def summary(self) -> str:
        """One line, e.g. ``threshold 0.4: efficiency_lat 0.61 (0.55 at 0.3) on 64 ...``."""
        if self.given:
            return f"threshold {self.threshold:g} (given): {self.criterion} {self.score:.3f}"
        return (
            f"threshold {self.threshold:g}: {self.criterion} {self.score:.3f} "
            f"({self.default_score:.3f} at {self.default:g}) on {self.n_windows} simulated "
            f"windows at {self.density_per_um2:g} µm⁻²"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the model card (NaN stays NaN: strict_json writes it as null)."""
        return asdict(self)

    def brief(self) -> dict[str, Any]:
        """The choice without its table (training log, ``train``'s summary)."""
        return {
            "threshold": self.threshold,
            "criterion": self.criterion,
            "score": self.score,
            "default_score": self.default_score,
            "given": list(self.given),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeepStormThresholdChoice:
        """The choice from its :meth:`to_dict` (a checkpoint's or a card's)."""
        return cls(**{**data, "given": tuple(data["given"])})


@torch.no_grad()
def predict_density(net: DeepStormNet, x: Tensor, batch_size: int = 32) -> Tensor:
    """Density images (B, 1, H·u, W·u) of scaled single frames (B, 1, H, W), in eval mode."""
    net.eval()
    return torch.cat([net(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def deepstorm_validation_set(
    cfg: Config,
    density_per_um2: float | None = None,
    n_windows: int | None = None,
    device: torch.device | str = "cpu",
    seed: int | None = None,
    sim: WindowSimulator | None = None,
) -> HeldOutSet:
    """Single-frame validation windows (Deep-STORM trains on no structured windows)."""
    return validation_set(
        cfg, density_per_um2, n_windows, device, seed, sim, n_frames=1, structured=False
    )


def choose_deepstorm_threshold(
    net: DeepStormNet,
    cfg: Config,
    scaling: Scaling | None = None,
    *,
    density_per_um2: float | None = None,
    n_windows: int | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    threshold: float | None = None,
    grid: tuple[float, ...] = THRESHOLD_GRID,
    sim: WindowSimulator | None = None,
    validation: HeldOutSet | None = None,
) -> DeepStormThresholdChoice:
    """Choose ``model.deepstorm.threshold`` for ``net`` on simulations of ``cfg``.

    Parameters
    ----------
    net
        The trained network (its device is used unless ``device`` is given).
    cfg
        The setup it was trained for; ``cfg.model.deepstorm.threshold`` is always tried.
    scaling
        The network's input scaling; default ``Scaling.from_config(cfg)`` (what training uses).
    density_per_um2, n_windows, seed
        The validation set (see :func:`.thresholds.validation_set`); default: the setup's
        density, ``cfg.training.eval_samples`` windows.
    threshold
        A given threshold: only it (and the config's) is scored, and it is kept.
    grid
        Candidate thresholds searched.
    sim, validation
        Reuse a single-frame simulator or an already simulated validation set.

    Returns
    -------
    DeepStormThresholdChoice
        The threshold of best lateral efficiency, its score, the config's threshold's score on
        the same windows, and the whole table.
    """
    scaling = Scaling.from_config(cfg) if scaling is None else scaling
    dev = next(net.parameters()).device if device is None else torch.device(device)
    if sim is None:
        crop = cfg.training.crop_px
        sim = WindowSimulator(cfg, (crop, crop), n_frames=1, device=dev)
    if validation is None:
        validation = deepstorm_validation_set(cfg, density_per_um2, n_windows, dev, seed, sim)
    adu = validation.batch.adu
    out = predict_density(net, scaling.scale_input(sim.camera.to_photons(adu)))
    ds = cfg.model.deepstorm
    px = cfg.camera.pixel_size_nm
    frames = torch.arange(out.shape[0])

    def localize_at(row: dict[str, float]) -> np.ndarray:
        at = ds.model_copy(update={"threshold": row["threshold"]})
        return localize_density(out, frames, at, px)

    values = (threshold,) if threshold is not None else grid_with(grid, ds.threshold)
    best, at_default, table = search_grid(
        [{"threshold": v} for v in values],
        {"threshold": ds.threshold},
        localize_at,
        validation.ground_truth(px),
        CRITERION,
        is_3d=False,
    )
    density = cfg.emitters.density_per_um2 if density_per_um2 is None else density_per_um2
    return DeepStormThresholdChoice(
        threshold=float(best["threshold"]),
        criterion=CRITERION,
        score=float(best[CRITERION]),
        default_score=float(at_default[CRITERION]),
        default=float(ds.threshold),
        density_per_um2=float(density),
        n_windows=int(out.shape[0]),
        window_px=int(adu.shape[-1]),
        given=() if threshold is None else ("threshold",),
        table=table,
    )
