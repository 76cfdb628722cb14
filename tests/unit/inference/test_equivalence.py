"""Streaming (ring buffer, any batch sizes, gaps) equals offline inference on the same frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from live_decode.config import Config, PostprocessConfig
from live_decode.inference.engine import Localizer
from live_decode.inference.offline import localize_movie
from live_decode.inference.processor import StreamProcessor
from live_decode.messages import CameraMeta, EosMsg, FrameMsg, GapMsg, Localizations, Message
from live_decode.model.checkpoint import make_card
from live_decode.model.network import DecodeNet

CAM = CameraMeta(
    pixel_size_nm=100, baseline_adu=100, e_per_adu=45, em_gain=300, qe=0.9, exposure_ms=20
)


@pytest.fixture(scope="module")
def localizer() -> Localizer:
    torch.manual_seed(0)
    net = DecodeNet(8, predict_z=False)
    with torch.no_grad():
        net.head_p[-1].bias.fill_(0.0)  # an untrained net that still detects plenty
    card = make_card("t", Config(), net)
    return Localizer(net, card, torch.device("cpu"), PostprocessConfig(raw_threshold=0.3))


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 3000, size=(12, 22, 26)).astype(np.uint16)  # not a multiple of 4


def _frames(movie: np.ndarray, indices: list[int]) -> list[FrameMsg]:
    return [FrameMsg(index=i, timestamp_ns=i, camera=CAM, pixels=movie[i]) for i in indices]


def _stream(localizer: Localizer, msgs: list[Message], chunks: list[int]) -> Localizations:
    proc = StreamProcessor(localizer)
    parts, pos = [], 0
    for size in chunks:
        parts.append(proc.process(msgs[pos : pos + size]).locs)
        pos += size
    assert pos == len(msgs)
    return np.concatenate(parts)


def _sorted(locs: Localizations) -> Localizations:
    return np.sort(locs, order=["frame", "y_nm", "x_nm"])


def _assert_same(a: Localizations, b: Localizations) -> None:
    a, b = _sorted(a), _sorted(b)
    assert len(a) == len(b) and len(a) > 0
    assert (a["frame"] == b["frame"]).all()
    for name in ("x_nm", "y_nm", "photons", "prob", "sigma_x_nm"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("chunks", [[13], [1] * 13, [3, 5, 1, 4], [2, 11]])
def test_streaming_equals_offline_including_first_and_last_frames(
    localizer: Localizer, movie: np.ndarray, chunks: list[int]
) -> None:
    offline = localize_movie(localizer, movie, CAM, batch_size=5)
    msgs: list[Message] = [*_frames(movie, list(range(12))), EosMsg(last_index=11)]
    streamed = _stream(localizer, msgs, chunks)
    _assert_same(streamed, offline)
    assert set(streamed["frame"]) <= set(range(12)) and {0, 11} <= set(streamed["frame"])


def test_frames_next_to_a_gap_equal_offline_on_each_segment(
    localizer: Localizer, movie: np.ndarray
) -> None:
    msgs: list[Message] = [
        *_frames(movie, [0, 1, 2, 3, 4]),
        GapMsg(first=5, count=2),
        *_frames(movie, [7, 8, 9, 10, 11]),
        EosMsg(last_index=11),
    ]
    streamed = _stream(localizer, msgs, [4, 4, 4])
    first = localize_movie(localizer, movie[:5], CAM)
    second = localize_movie(localizer, movie[7:], CAM)
    second["frame"] += 7
    _assert_same(streamed, np.concatenate([first, second]))


def test_stats_cover_every_processed_frame(localizer: Localizer, movie: np.ndarray) -> None:
    proc = StreamProcessor(localizer)
    res = proc.process([*_frames(movie, [0, 1, 2]), EosMsg(last_index=2)])
    assert [s.frame for s in res.stats] == [0, 1, 2]
    for s in res.stats:
        n = int((res.locs["frame"] == s.frame).sum())
        assert s.count == n
        assert s.density_per_um2 == pytest.approx(n / (22 * 26 * 0.01))
    assert res.finished
