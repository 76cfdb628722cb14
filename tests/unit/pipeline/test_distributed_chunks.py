"""One Dask chunk in process: halo frames give exact edges, gaps are kept, errors say what to do."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("distributed", reason="needs the [dask] extra: pip install 'dask[distributed]'")

from live_decode.config import load_config
from live_decode.errors import ModelCardError, MovieError
from live_decode.io.movie import MovieRecorder
from live_decode.model.checkpoint import make_card, save_model
from live_decode.model.network import DecodeNet
from live_decode.pipeline.build import DEMO_CONFIG, build_localizer
from live_decode.pipeline.distributed import Job, chunk_bounds, localize_chunk
from live_decode.pipeline.offline import OfflineStream, source_frames
from live_decode.sources.base import camera_from_config
from live_decode.sources.replay import ReplaySource

CFG = load_config(DEMO_CONFIG)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = DecodeNet(4, temporal_context=True, predict_z=False)
    with torch.no_grad():
        net.head_p[-1].bias.fill_(-5.0)  # tens of localizations per noise frame
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, net, make_card("tiny", CFG, net))
    return path


@pytest.fixture(scope="module")
def gapped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw recording of 20 frames, camera frames 5–7 lost: the gap falls on a chunk edge."""
    camera = {k: v for k, v in asdict(camera_from_config(CFG)).items() if k != "extra"}
    path = tmp_path_factory.mktemp("movie") / "raw.ome.tif"
    rec = MovieRecorder(path, camera, frame_interval_ms=30.0)
    rng = np.random.default_rng(4)
    for i in [*range(5), *range(8, 23)]:
        rec.append(rng.integers(100, 3000, (32, 32)).astype(np.uint16), i)
    rec.close()
    return path


def _job(source: ReplaySource, paths: list[Path], model: Path) -> Job:
    return Job(
        paths=tuple(str(p) for p in paths),
        file_offsets=tuple(int(o) for o in source.file_offsets),
        camera=source.camera,
        config=CFG,
        check_config=False,
        config_name=None,
        model=str(model),
        device="cpu",
        ignore_model_mismatch=False,
        batch_frames=CFG.inference.max_batch,
    )


def test_chunks_with_halos_equal_the_stream_across_a_gap(gapped: Path, model: Path) -> None:
    source = ReplaySource([gapped], camera_from_config(CFG))
    indices = source.frame_indices
    assert indices[4] == 4 and indices[5] == 8  # the recorded gap, between positions 4 and 5
    stream = OfflineStream(build_localizer(CFG, model, "cpu"), source.camera)
    whole = np.concatenate([b.locs for b in stream.batches(source_frames(source))])
    job = _job(source, [gapped], model)
    parts = [
        localize_chunk(job, k, a, b, indices[max(a - 1, 0) : b + 1])
        for k, (a, b) in enumerate(chunk_bounds(source.n_frames, 5))  # edges at 5, 10, 15
    ]
    source.close()
    chunked = np.concatenate([p.locs for p in parts])
    assert len(whole) > 50
    np.testing.assert_array_equal(chunked["frame"], whole["frame"])
    for name in ("x_nm", "y_nm", "photons"):
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-6, atol=1e-3, err_msg=name)
    assert [p.frames for p in parts] == [5, 5, 5, 5]
    assert sorted({s.frame for p in parts for s in p.stats}) == indices.tolist()


def test_a_worker_that_cannot_load_the_model_says_so(gapped: Path, tmp_path: Path) -> None:
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a model")
    source = ReplaySource([gapped], camera_from_config(CFG))
    job = _job(source, [gapped], bad)
    source.close()
    with pytest.raises(ModelCardError, match=r"(?s)cannot load the model .*shared file system"):
        localize_chunk(job, 0, 0, 5, np.arange(6))


def test_a_worker_that_cannot_read_a_movie_says_so(
    gapped: Path, model: Path, tmp_path: Path
) -> None:
    source = ReplaySource([gapped], camera_from_config(CFG))
    job = replace(_job(source, [gapped], model), paths=(str(tmp_path / "elsewhere.ome.tif"),))
    source.close()
    with pytest.raises(MovieError, match=r"(?s)cannot read .*elsewhere.*shared file"):
        localize_chunk(job, 0, 0, 5, np.arange(6))
