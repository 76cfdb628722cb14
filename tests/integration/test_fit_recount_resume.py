"""An interrupted density recount is finished by ``fit --resume`` (tiny budget, sparse movie).

The round is forced to change the setup (its counting is under test elsewhere,
test_fit_recount.py); the fit is interrupted while the round is applied — before setup.yaml is
rewritten, or after it and config.yaml were but while the trainer of the new setup simulates its
held-out set, before its checkpoint — and then resumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import tifffile
import torch
import yaml

import live_decode.pipeline.fit as fit_module
import live_decode.pipeline.fit_recount as recount_module
from live_decode.config import load_config
from live_decode.model.card import read_card
from live_decode.pipeline.fit import fit
from live_decode.pipeline.fit_recount import RecountRound, read_pending, read_rounds
from live_decode.testing.calibration import simulate

STEPS = 6
OVERRIDES = {"training": {"crop_px": 16, "batch_size": 2, "eval_samples": 8}}


class Interrupted(Exception):
    """Stands for Ctrl-C or a killed process at that point."""


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, frames, _ = simulate("emccd", frames=60, laser_mw=5.0, fov_px=40)
    path = tmp_path_factory.mktemp("raw") / "raw.tif"
    tifffile.imwrite(path, frames)
    return path


def run_fit(movie: Path, out: Path, resume: bool = False) -> Any:
    return fit(
        [movie],
        out,
        steps=STEPS,
        device="cpu",
        pixel_size_nm=117.0,
        camera="emccd",
        refine=False,
        resume=resume,
        overrides=OVERRIDES,
    )


def widening(trainer: Any, blocks: Any, k: int, fixed: Any = None) -> RecountRound:
    """The real round, made to change the setup: density × 1.5, range top × 1.5."""
    done = recount_module.recount_round(trainer, blocks, k, fixed)
    lo, hi = done.range_before
    return replace(
        done, density_after=round(done.density_before * 1.5, 3), range_after=(lo, hi * 1.5)
    )


def interrupt(*_: Any, **__: Any) -> None:
    raise Interrupted


def density_of(setup: Path) -> float:
    return float(yaml.safe_load(setup.read_text())["emitters"]["density_per_um2"])


def checkpoint_density(model_dir: Path) -> float:
    state = torch.load(model_dir / "checkpoint.pt", map_location="cpu", weights_only=False)
    return float(state["resume_config"]["emitters"]["density_per_um2"])


@pytest.mark.parametrize("where", ["before the setup is rewritten", "before the new checkpoint"])
def test_a_recount_interrupted_while_it_changes_the_setup_is_finished_on_resume(
    movie: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    out = tmp_path / "fit"
    setup, model_dir = out / "calibration" / "setup.yaml", out / "model"
    monkeypatch.setattr(fit_module, "recount_round", widening)
    with monkeypatch.context() as m:
        if where == "before the setup is rewritten":
            m.setattr(fit_module, "rewrite_setup", interrupt)
        else:  # the trainer continue_training builds (it simulates a new held-out set)
            m.setattr(recount_module, "Trainer", interrupt)
        with pytest.raises(Interrupted):
            run_fit(movie, out)
    pending = read_pending(model_dir)
    assert pending is not None and read_rounds(model_dir) == []  # not done yet
    before, after = pending.density_before, pending.density_after
    assert checkpoint_density(model_dir) == before  # the checkpoint is still the old setup's
    assert density_of(setup) == (before if where.endswith("rewritten") else after)

    result = run_fit(movie, out, resume=True)
    (done,) = read_rounds(model_dir)
    assert read_pending(model_dir) is None
    assert done.to_dict() == pending.to_dict()
    assert density_of(setup) == after and checkpoint_density(model_dir) == after
    assert setup.read_text().count("recount round 1") == 1
    cfg = load_config(model_dir / "config.yaml")
    assert cfg.emitters.density_per_um2 == after
    assert cfg.training.density_range_per_um2 == pending.range_after
    card = read_card(model_dir / "model.pt")
    assert card.training_steps == STEPS
    assert card.parsed_config.emitters.density_per_um2 == after
    assert card.density_recount is not None and len(card.density_recount) == 1
    assert result.density["setup_per_um2"] == after
