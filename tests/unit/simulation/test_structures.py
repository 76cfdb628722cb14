"""Structured training windows: same mean density as uniform ones, far more crowded locally."""

from __future__ import annotations

import pytest
import torch

from live_decode.config import Config, EmittersConfig, StructuredSamplesConfig
from live_decode.simulation.batch import WindowBatch, WindowSimulator
from live_decode.simulation.structures import CLUSTERS, FILAMENTS, UNIFORM, window_kinds

WINDOWS, SIDE_PX, CELL_PX, DENSITY = 48, 40, 4, 2.0


def _sim() -> WindowSimulator:
    cfg = Config(emitters=EmittersConfig(z_range_nm=(-400.0, 400.0)))
    return WindowSimulator(cfg, (SIDE_PX, SIDE_PX))


def _batch(structured: StructuredSamplesConfig | None, seed: int = 1) -> WindowBatch:
    g = torch.Generator().manual_seed(seed)
    return _sim().sample(torch.full((WINDOWS,), DENSITY), g, structured)


def _centre_counts(batch: WindowBatch) -> tuple[float, float]:
    """Mean emitters per window and the dispersion index (variance / mean) of counts per cell."""
    em = batch.emitters.select(batch.emitters.frame % 3 == 1)
    cells = SIDE_PX // CELL_PX
    cell = (em.xyz[:, 0] // CELL_PX).long() + cells * (em.xyz[:, 1] // CELL_PX).long()
    counts = torch.bincount((em.frame // 3) * cells**2 + cell, minlength=WINDOWS * cells**2)
    counts = counts.double()
    return len(em) / WINDOWS, float(counts.var() / counts.mean())


@pytest.mark.parametrize(("filament_share", "min_dispersion"), [(1.0, 2.0), (0.0, 3.0), (0.5, 2.0)])
def test_structured_windows_are_locally_denser_at_the_same_mean_density(
    filament_share: float, min_dispersion: float
) -> None:
    uniform_mean, uniform_dispersion = _centre_counts(_batch(None))
    cfg = StructuredSamplesConfig(fraction=1.0, filament_share=filament_share)
    mean, dispersion = _centre_counts(_batch(cfg))
    expected = DENSITY * (SIDE_PX * 0.1) ** 2  # 100 nm pixels
    # Poisson counts of 48 windows: the mean is within ±3 standard errors (~±2.5 emitters)
    for m in (uniform_mean, mean):
        assert abs(m - expected) < 3 * (expected / WINDOWS) ** 0.5
    assert 0.8 < uniform_dispersion < 1.25  # a Poisson process: variance = mean
    assert dispersion > min_dispersion


def test_structured_positions_stay_in_the_window_and_the_z_range() -> None:
    cfg = StructuredSamplesConfig(fraction=1.0, filaments_per_window=(3, 3))
    em = _batch(cfg).emitters
    assert len(em) > 0
    assert bool(((em.xyz[:, :2] >= 0) & (em.xyz[:, :2] < SIDE_PX)).all())
    assert bool(((em.xyz[:, 2] >= -400.0) & (em.xyz[:, 2] <= 400.0)).all())
    # an emitter keeps its position across the frames it spans
    for i in em.id.unique()[:50]:
        assert torch.unique(em.xyz[em.id == i], dim=0).shape[0] == 1


def test_a_zero_fraction_draws_exactly_the_uniform_windows() -> None:
    a = _batch(None, seed=5)
    b = _batch(StructuredSamplesConfig(fraction=0.0), seed=5)
    assert torch.equal(a.adu, b.adu) and torch.equal(a.emitters.xyz, b.emitters.xyz)


def test_window_kinds_follow_the_configured_shares() -> None:
    cfg = StructuredSamplesConfig(fraction=0.4, filament_share=0.25)
    kinds = window_kinds(20_000, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
    share = [float((kinds == k).double().mean()) for k in (UNIFORM, FILAMENTS, CLUSTERS)]
    assert share == pytest.approx([0.6, 0.1, 0.3], abs=0.015)


def test_ranges_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="clusters_per_window"):
        StructuredSamplesConfig(clusters_per_window=(4, 2))
