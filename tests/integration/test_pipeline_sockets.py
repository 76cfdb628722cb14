"""Source → ZeroMQ (real loopback sockets) → worker → files, against offline inference."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zmq

from live_decode.config import Config, PostprocessConfig
from live_decode.inference.engine import Localizer
from live_decode.inference.offline import localize_movie
from live_decode.inference.worker import CSV_NAME, HDF5_NAME, InferenceWorker
from live_decode.io.picasso import read_picasso_hdf5
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import CameraMeta, EosMsg, LocsMsg
from live_decode.model.checkpoint import make_card
from live_decode.model.network import DecodeNet
from live_decode.sources.replay import ReplaySource
from live_decode.sources.runner import SourceRunner
from live_decode.testing.frames import camera_movie
from live_decode.transport.frames import FramePuller, FramePusher
from live_decode.transport.results import ResultPublisher, ResultSubscriber

CAM = CameraMeta(
    pixel_size_nm=100, baseline_adu=100, e_per_adu=45, em_gain=300, qe=0.9, exposure_ms=20
)


@pytest.fixture
def ctx() -> zmq.Context[zmq.Socket[bytes]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture(scope="module")
def localizer() -> Localizer:
    torch.manual_seed(0)
    net = DecodeNet(8, predict_z=False)
    with torch.no_grad():
        net.head_p[-1].bias.fill_(0.0)
    return Localizer(
        net,
        make_card("t", Config(), net),
        torch.device("cpu"),
        PostprocessConfig(raw_threshold=0.3),
    )


def test_streamed_files_equal_offline_inference(
    tmp_path: Path, ctx: zmq.Context[zmq.Socket[bytes]], localizer: Localizer
) -> None:
    movie = camera_movie((20, 24, 28), seed=1)
    tifffile.imwrite(tmp_path / "m.tif", movie)
    pusher = FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True, sndhwm=4)
    puller = FramePuller(ctx, pusher.endpoint, rcvhwm=4)
    publisher = ResultPublisher(ctx, "tcp://127.0.0.1:*")
    sub = ResultSubscriber(ctx, publisher.endpoint)
    worker = InferenceWorker(localizer, puller, publisher, tmp_path / "run", max_batch=6)
    thread = threading.Thread(target=worker.run)
    thread.start()
    source = ReplaySource([tmp_path / "m.tif"], CAM)
    summary = SourceRunner(source, pusher).run()
    source.close()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert summary.frames_sent == 20 and summary.frames_dropped == 0 and summary.eos_sent
    assert worker.summary.frames_processed == 20

    offline = np.sort(localize_movie(localizer, movie, CAM), order=["frame", "y_nm", "x_nm"])
    csv = np.sort(
        read_thunderstorm_csv(tmp_path / "run" / CSV_NAME), order=["frame", "y_nm", "x_nm"]
    )
    assert len(csv) == len(offline) > 0
    np.testing.assert_array_equal(csv["frame"], offline["frame"])
    np.testing.assert_allclose(csv["x_nm"], offline["x_nm"], atol=0.01)
    np.testing.assert_allclose(csv["y_nm"], offline["y_nm"], atol=0.01)
    h5 = np.sort(read_picasso_hdf5(tmp_path / "run" / HDF5_NAME), order=["frame", "y_nm", "x_nm"])
    np.testing.assert_allclose(h5["x_nm"], offline["x_nm"], atol=0.01)

    got = 0
    for _ in range(200):
        msg = sub.recv(timeout_ms=50)
        if msg is None or isinstance(msg, EosMsg):
            break
        if isinstance(msg, LocsMsg):
            got += len(msg.locs)
    # PUB/SUB may lose the first messages before the subscription lands; never more than sent.
    assert got <= len(offline)
    for s in (pusher, puller, publisher, sub):
        s.close()
