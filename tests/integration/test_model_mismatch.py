"""A model that does not fit the run is refused; ``--ignore-model-mismatch`` leaves a warning."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml
import zmq

from live_decode.cli.main import main
from live_decode.config import Config, config_from_dict
from live_decode.errors import ModelCardError
from live_decode.inference.engine import Localizer
from live_decode.inference.worker import InferenceWorker
from live_decode.messages import WORKER_EVENTS, ErrorMsg, EventMsg
from live_decode.model.checkpoint import make_card
from live_decode.model.network import DecodeNet
from live_decode.pipeline.offline import localize_files
from live_decode.sources.base import camera_from_config
from live_decode.sources.replay import ReplaySource
from live_decode.sources.runner import SourceRunner
from live_decode.testing.frames import camera_movie
from live_decode.transport.frames import FramePuller, FramePusher
from live_decode.transport.results import ResultPublisher, ResultSubscriber

REPO = Path(__file__).resolve().parents[2]


def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A 3-D astigmatic config (the tiny model is 2-D) and a bare 10-frame movie."""
    data = yaml.safe_load((REPO / "configs" / "astig_emccd.yaml").read_text())
    data["inference"] = {"device": "cpu"}
    cfg = tmp_path / "astig.yaml"
    cfg.write_text(yaml.safe_dump(data))
    movie = tmp_path / "m.tif"
    tifffile.imwrite(movie, camera_movie((10, 32, 32)))
    return cfg, movie


def test_a_mismatch_is_refused_before_anything_is_written(tmp_path: Path, tiny_model: Path) -> None:
    cfg, movie = setup(tmp_path)
    with pytest.raises(ModelCardError) as info:
        localize_files([movie], tmp_path / "run", config=cfg, model=tiny_model)
    text = str(info.value)
    assert "2-D vs 3-D" in text and "PSF kind" in text and "--ignore-model-mismatch" in text
    assert f"live-decode train {cfg}" in text
    assert not (tmp_path / "run" / "locs.csv").exists()


def test_an_ignored_mismatch_is_kept_in_the_summaries(tmp_path: Path, tiny_model: Path) -> None:
    cfg, movie = setup(tmp_path)
    out = tmp_path / "run"
    summary = localize_files([movie], out, config=cfg, model=tiny_model, ignore_model_mismatch=True)
    warnings = summary["model_mismatches"]
    assert isinstance(warnings, list) and len(warnings) == 2
    assert any(w.startswith("2-D vs 3-D") for w in warnings)
    worker = json.loads((out / "worker_summary.json").read_text())
    assert worker["mismatches"] == warnings
    assert json.loads((out / "summary.json").read_text())["model_mismatches"] == warnings


def test_an_ignored_mismatch_is_published_for_the_viewer(tmp_path: Path) -> None:
    """The warning travels on the results channel (``event`` topic), where the viewer shows it."""
    torch.manual_seed(0)
    net = DecodeNet(4, predict_z=False)
    localizer = Localizer(net, make_card("t", Config(), net), torch.device("cpu"))
    run_cfg = config_from_dict({"psf": {"kind": "gaussian", "sigma_nm": 200}})
    movie = tmp_path / "m.tif"
    tifffile.imwrite(movie, np.full((4, 16, 16), 200, np.uint16))
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pusher = FramePusher(ctx, "tcp://127.0.0.1:*", lossless=True, sndhwm=4)
    puller = FramePuller(ctx, pusher.endpoint, rcvhwm=4)
    publisher = ResultPublisher(ctx, "tcp://127.0.0.1:*")
    sub = ResultSubscriber(ctx, publisher.endpoint, topics=("event",))
    worker = InferenceWorker(
        localizer, puller, publisher, tmp_path / "run", override_mismatch=True, config=run_cfg
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(0.5)  # let the subscription reach the publisher (PUB drops for late joiners)
    source = ReplaySource([movie], camera_from_config(Config()))
    try:
        SourceRunner(source, pusher).run()
    finally:
        source.close()
    thread.join(timeout=60)
    codes, errors = [], []
    while (msg := sub.recv(timeout_ms=200)) is not None:
        if isinstance(msg, EventMsg) and msg.source == WORKER_EVENTS:
            codes.append((msg.name, msg.message))
        elif isinstance(msg, ErrorMsg):
            errors.append(msg)
    for s in (pusher, puller, publisher, sub):
        s.close()
    ctx.term()
    assert [c for c, _ in codes] == ["model_mismatch_ignored"]  # a notice, no error
    assert errors == []
    assert codes[0][1].startswith("PSF shape") and "σ 200 nm" in codes[0][1]
    assert worker.summary.mismatches == [codes[0][1]]


def test_localize_refuses_a_config_that_contradicts_the_file(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``live-decode localize`` on an OME-TIFF at 160 nm with a config that says 100 nm: exit 2,
    both values and their sources on the console, nothing written."""
    movie = tmp_path / "m.ome.tif"
    frames = np.random.default_rng(0).poisson(150, size=(6, 32, 32)).astype(np.uint16)
    tifffile.imwrite(movie, frames, ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 0.16})
    cfg = REPO / "configs" / "demo.yaml"
    out = tmp_path / "run"
    argv = ["localize", str(movie), "--config", str(cfg), "--model", str(tiny_model)]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the file says 160 (file:OME PhysicalSizeX)" in err
    assert f"the config says 100 (config {cfg} camera.pixel_size_nm)" in err
    assert not (out / "locs.csv").exists()
