"""The public API: one localization path for arrays, files and iterators; the card check;
simulate, evaluate, save and read_locs round trips."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

import live_decode as ld
from live_decode.errors import LocalizationFileError, ModelCardError
from live_decode.evaluation.report import evaluate_localizations
from live_decode.messages import TRUTH_DTYPE
from live_decode.sources.base import camera_from_config

N_FRAMES = 12


@pytest.fixture(scope="module")
def cfg() -> ld.Config:
    return ld.demo_config()


@pytest.fixture(scope="module")
def sim(cfg: ld.Config) -> ld.Simulation:
    return ld.simulate(cfg, frames=N_FRAMES, seed=7)


@pytest.fixture(scope="module")
def model() -> ld.Model:
    return ld.load_model(device="cpu")


@pytest.fixture(scope="module")
def locs(model: ld.Model, sim: ld.Simulation, cfg: ld.Config) -> pd.DataFrame:
    return model.localize(sim.movie, camera=cfg)


def test_simulate_is_seeded_and_documented(sim: ld.Simulation, cfg: ld.Config) -> None:
    movie, truth = sim
    h, w = cfg.microscope.fov_px
    assert movie.shape == (N_FRAMES, h, w) and movie.dtype == np.uint16
    assert list(truth.columns) == ["frame", "id", "x_nm", "y_nm", "z_nm", "photons"]
    assert truth["frame"].between(0, N_FRAMES - 1).all()
    again = ld.simulate(cfg, frames=N_FRAMES, seed=7)
    np.testing.assert_array_equal(again.movie, movie)
    assert not np.array_equal(ld.simulate(cfg, frames=2, seed=8).movie, movie[:2])


def test_localize_returns_the_documented_columns(locs: pd.DataFrame) -> None:
    assert tuple(locs.columns) == ld.LOC_COLUMNS
    assert locs["frame"].dtype == np.int64 and locs["x_nm"].dtype == np.float32
    assert len(locs) > 0 and locs["frame"].between(0, N_FRAMES - 1).all()
    assert locs["prob"].between(0, 1).all()


def test_array_iterator_and_file_give_the_same_rows(
    model: ld.Model, sim: ld.Simulation, cfg: ld.Config, locs: pd.DataFrame, tmp_path: Path
) -> None:
    def frames() -> Iterator[np.ndarray]:
        yield from sim.movie  # a generator: the API cannot know its length

    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, sim.movie)
    pd.testing.assert_frame_equal(model.localize(frames(), camera=cfg), locs)
    pd.testing.assert_frame_equal(model.localize(path), locs)  # demo camera assumed
    half = N_FRAMES // 2
    tifffile.imwrite(tmp_path / "a.tif", sim.movie[:half])
    tifffile.imwrite(tmp_path / "b.tif", sim.movie[half:])
    series = model.localize([tmp_path / "a.tif", tmp_path / "b.tif"])
    pd.testing.assert_frame_equal(series, locs)


def test_progress_counts_frames(model: ld.Model, sim: ld.Simulation) -> None:
    seen: list[tuple[int, int]] = []
    model.localize(sim.movie, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (N_FRAMES, N_FRAMES)


def test_the_card_is_checked_against_the_camera(
    model: ld.Model, sim: ld.Simulation, cfg: ld.Config
) -> None:
    wrong = replace(camera_from_config(cfg), pixel_size_nm=160.0)
    with pytest.raises(ModelCardError, match="pixel size"):
        model.localize(sim.movie, camera=wrong)
    assert len(model.localize(sim.movie, camera=wrong, ignore_model_mismatch=True)) > 0


def test_bad_movies_say_what_to_pass(model: ld.Model) -> None:
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        model.localize(np.zeros((64, 64), np.uint16))
    with pytest.raises(TypeError, match="iterator of"):
        model.localize(3.5)  # type: ignore[arg-type]


def test_evaluate_is_the_evaluate_command_report(
    model: ld.Model, locs: pd.DataFrame, sim: ld.Simulation, cfg: ld.Config
) -> None:
    metrics = ld.evaluate(locs, sim.truth, model=model)
    assert 0.5 < metrics["jaccard"] <= 1 and metrics["n_tp"] > 0
    assert metrics["rmse_ax_nm"] is None  # a 2-D model: n/a
    gt = np.zeros(len(sim.truth), TRUTH_DTYPE)
    for name in gt.dtype.names or ():
        gt[name] = sim.truth[name]
    from live_decode.api.tables import as_locs

    report = evaluate_localizations(
        as_locs(locs), gt, model.card.parsed_config, is_3d=False, frame_shape_px=(64, 64)
    ).to_dict()
    assert metrics.keys() == report.keys()
    assert metrics["jaccard"] == report["jaccard"] and metrics["n_fp"] == report["n_fp"]


def test_save_and_read_back_every_format(locs: pd.DataFrame, tmp_path: Path) -> None:
    files = ld.save(locs, tmp_path / "run", formats=("csv", "hdf5", "decode_h5", "smap"))
    assert (tmp_path / "run" / "locs.yaml").is_file()
    assert all(path.is_file() for path in files.values())
    for path in files.values():
        back = ld.read_locs(path)
        assert tuple(back.columns) == ld.LOC_COLUMNS
        np.testing.assert_array_equal(back["frame"], locs["frame"])
        np.testing.assert_allclose(back["x_nm"], locs["x_nm"], atol=0.01)
        np.testing.assert_allclose(back["photons"], locs["photons"], rtol=1e-3)
    with pytest.raises(ld.LiveDecodeError, match="overwrite=True"):
        ld.save(locs, tmp_path / "run", formats=("csv",))
    with pytest.raises(ValueError, match="unknown format"):
        ld.save(locs, tmp_path / "other", formats=("xls",))  # type: ignore[arg-type]
    with pytest.raises(LocalizationFileError, match=r"\.csv \(ThunderSTORM\)"):
        ld.read_locs(tmp_path / "locs.parquet")


def test_load_config_takes_paths_mappings_and_configs(cfg: ld.Config, tmp_path: Path) -> None:
    assert ld.load_config(cfg) is cfg
    assert ld.load_config({"microscope": {"fov_px": [32, 48]}}).microscope.fov_px == (32, 48)
    path = tmp_path / "c.yaml"
    path.write_text("camera:\n  pixel_size_nm: 110\n")
    assert ld.load_config(path).camera.pixel_size_nm == 110
    with pytest.raises(ld.ConfigError, match="unknown key"):
        ld.load_config({"camera": {"pixel_size": 1}})
