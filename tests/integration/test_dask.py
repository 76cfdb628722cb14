"""Batch re-analysis on Dask equals the one-process analysis, row for row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

pytest.importorskip("distributed", reason="needs the [dask] extra: pip install 'dask[distributed]'")

from live_decode.inference.worker import CSV_NAME
from live_decode.io.movie import write_movie
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import Localizations
from live_decode.pipeline.build import DEMO_CONFIG
from live_decode.pipeline.distributed import chunk_bounds, local_client
from live_decode.pipeline.offline import localize_files

if TYPE_CHECKING:
    from distributed import Client

CHUNK_FRAMES = 8  # 30-frame movies: chunk edges at 8, 16, 24 and across the file boundary


@pytest.fixture(scope="module")
def movies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two simulated 64×64 movies of 30 and 27 frames (demo camera) making one series."""
    from live_decode.api.data import simulate
    from live_decode.config import load_config
    from live_decode.sources.base import camera_from_config

    cfg = load_config(DEMO_CONFIG)
    camera = {k: v for k, v in asdict(camera_from_config(cfg)).items() if k != "extra"}
    folder = tmp_path_factory.mktemp("movies")
    paths = []
    for seed, n in ((1, 30), (2, 27)):
        movie = simulate(frames=n, seed=seed).movie
        path = folder / f"m{seed}.ome.tif"
        write_movie(path, iter(movie), n, (64, 64), camera, cfg.microscope.exposure_ms)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def one_process(
    movies: list[Path], tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Localizations:
    out = tmp_path_factory.mktemp("one") / "run"
    localize_files(movies, out, model=tiny_model, device="cpu")
    return read_thunderstorm_csv(out / CSV_NAME)


def assert_same_rows(got: Localizations, expected: Localizations) -> None:
    """Same rows in the same order: frame exact, x/y within 0.01 nm, photons within 1e-5."""
    assert len(expected) > 100 and len(got) == len(expected)
    np.testing.assert_array_equal(got["frame"], expected["frame"])
    for name in ("x_nm", "y_nm"):
        np.testing.assert_allclose(got[name], expected[name], rtol=0, atol=0.01, err_msg=name)
    np.testing.assert_allclose(got["photons"], expected["photons"], rtol=1e-5, err_msg="photons")


def test_chunk_bounds_cover_the_series_once() -> None:
    bounds = chunk_bounds(57, CHUNK_FRAMES)
    covered = np.concatenate([np.arange(a, b) for a, b in bounds])
    np.testing.assert_array_equal(covered, np.arange(57))
    assert bounds[-1] == (56, 57)


def test_workers_2_equal_one_process(
    movies: list[Path], tiny_model: Path, one_process: Localizations, tmp_path: Path
) -> None:
    """``live-decode localize --workers 2`` writes the one-process rows, chunk edges included."""
    from live_decode.cli.main import main

    out = tmp_path / "dask"
    argv = ["localize", *map(str, movies), "--out", str(out), "--model", str(tiny_model)]
    argv += ["--device", "cpu", "--workers", "2", "--chunk-frames", str(CHUNK_FRAMES)]
    assert main(argv) == 0
    got = read_thunderstorm_csv(out / CSV_NAME)
    assert_same_rows(got, one_process)
    bounds = chunk_bounds(57, CHUNK_FRAMES)
    edges = {a for a, _ in bounds} | {b - 1 for _, b in bounds}
    assert edges <= set(np.unique(got["frame"]).tolist())  # the edge frames have rows, and match


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A local cluster of two worker processes on loopback, shared by the tests below."""
    c = local_client(2)
    try:
        yield c
    finally:
        cluster = c.cluster
        c.close()
        if cluster is not None:
            cluster.close()


def test_killed_worker_chunk_is_retried(
    movies: list[Path],
    tiny_model: Path,
    one_process: Localizations,
    client: Client,
    tmp_path: Path,
) -> None:
    """A worker that dies while running chunk 2: the chunk reruns elsewhere, rows complete, once."""
    import live_decode as ld
    from live_decode.testing.dask_faults import KillOnceOnChunk

    marker = tmp_path / "killed"
    client.register_plugin(KillOnceOnChunk(2, marker), name="kill-once")
    try:
        summary = ld.localize_many(
            movies, tmp_path / "dask", client=client, chunk_frames=CHUNK_FRAMES,
            model=tiny_model, device="cpu",
        )  # fmt: skip
    finally:
        client.unregister_worker_plugin("kill-once")
    assert marker.is_file(), "the worker was never killed: the test tested nothing"
    assert summary["status"] == "completed"
    assert_same_rows(read_thunderstorm_csv(tmp_path / "dask" / CSV_NAME), one_process)


def test_scheduler_address_runs_on_an_existing_cluster(
    movies: list[Path],
    tiny_model: Path,
    one_process: Localizations,
    client: Client,
    tmp_path: Path,
) -> None:
    """``--scheduler tcp://127.0.0.1:PORT``: the same rows on a cluster that outlives the run."""
    from live_decode.cli.main import main

    address = client.scheduler.address
    out = tmp_path / "dask"
    argv = ["localize", *map(str, movies), "--out", str(out), "--model", str(tiny_model)]
    argv += ["--device", "cpu", "--scheduler", address, "--chunk-frames", "16"]
    assert address.startswith("tcp://127.0.0.1:") and main(argv) == 0
    assert_same_rows(read_thunderstorm_csv(out / CSV_NAME), one_process)
    assert client.submit(sum, [1, 2]).result() == 3  # the cluster is still there
