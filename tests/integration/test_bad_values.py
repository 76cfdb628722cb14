"""Well-formed frame-stream messages with bad values, over real loopback ZeroMQ to a real
InferenceWorker (issue 12): each is rejected, counted and reported; none crashes the worker or
poisons the stream, and the good frames after them are still localized.

The worker runs in a thread of the test (a crash would surface as the thread's exception); the
tiny untrained model gives tens of localizations per noisy frame, so every frame shows in the CSV.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from live_decode.config import load_config
from live_decode.inference.engine import Localizer
from live_decode.inference.worker import CSV_NAME, InferenceWorker, WorkerSummary
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import CameraMeta, EosMsg, ErrorMsg, FrameMsg, GapMsg, encode
from live_decode.model.checkpoint import load_model
from live_decode.pipeline.build import DEMO_CONFIG
from live_decode.sources.base import camera_from_config
from live_decode.testing.frames import camera_movie
from live_decode.transport.frames import FramePuller
from live_decode.transport.results import ResultPublisher, ResultSubscriber

Ctx = zmq.Context[zmq.Socket[bytes]]
Parts = list[bytes | memoryview]


@pytest.fixture
def ctx() -> Iterator[Ctx]:
    context: Ctx = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture(scope="module")
def localizer(tiny_model: Path) -> Localizer:
    net, card = load_model(tiny_model)
    return Localizer(net, card, torch.device("cpu"))


def frame(index: int, pixels: np.ndarray, camera: CameraMeta) -> Parts:
    return encode(FrameMsg(index=index, timestamp_ns=time.time_ns(), camera=camera, pixels=pixels))


def edit(parts: Parts, raw: bool = False, **changes: object) -> Parts:
    """``parts`` with header keys changed (``camera.X`` keys inside the camera object); ``raw``
    splices the values as JSON text, so numbers JSON cannot hold (1e400) get through."""
    header = json.loads(bytes(parts[0]))
    literal: dict[str, str] = {}
    for key, value in changes.items():
        target, name = (header["camera"], key[7:]) if key.startswith("camera.") else (header, key)
        if raw:
            target[name] = f"@@{name}@@"
            literal[f'"@@{name}@@"'] = str(value)
        else:
            target[name] = value
    text = json.dumps(header)
    for placeholder, value in literal.items():
        text = text.replace(placeholder, value)
    return [text.encode(), *parts[1:]]


def gap(first: int, count: int) -> Parts:
    return encode(GapMsg(first=first, count=count))


def test_bad_values_are_rejected_counted_and_the_stream_goes_on(
    tmp_path: Path, ctx: Ctx, localizer: Localizer
) -> None:
    camera = camera_from_config(load_config(DEMO_CONFIG))
    h, w = 32, 32
    movie = camera_movie((12, h, w), seed=3)
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    puller = FramePuller(ctx, f"tcp://127.0.0.1:{port}")
    publisher = ResultPublisher(ctx, "tcp://127.0.0.1:*")
    sub = ResultSubscriber(ctx, publisher.endpoint, topics=("event",))
    time.sleep(0.3)  # let the subscription land: the rejections are published as events
    worker = InferenceWorker(localizer, puller, publisher, tmp_path / "run", max_batch=4)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:  # the test fails on it below
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()

    for i in range(3):  # frames 0..2: the stream, its size and calibration are set
        push.send_multipart(frame(i, movie[i], camera), copy=False)
    good = frame(3, movie[3], camera)
    nan_frame = movie[3].astype(np.float32)
    nan_frame[5, 7] = np.nan
    bad: dict[str, Parts] = {
        "em_gain 0 (divides by zero)": edit(good, **{"camera.em_gain": 0}),
        "em_gain below 1": edit(good, **{"camera.em_gain": 0.5}),
        "qe 0 (divides by zero)": edit(good, **{"camera.qe": 0}),
        "qe above 1": edit(good, **{"camera.qe": 1.5}),
        "negative qe": edit(good, **{"camera.qe": -0.9}),
        "pixel size 0": edit(good, **{"camera.pixel_size_nm": 0}),
        "pixel size in metres mistaken for nm": edit(good, **{"camera.pixel_size_nm": 1e7}),
        "negative baseline": edit(good, **{"camera.baseline_adu": -100}),
        "e-/ADU 0": edit(good, **{"camera.e_per_adu": 0}),
        "negative exposure": edit(good, **{"camera.exposure_ms": -20}),
        "negative read noise": edit(good, **{"camera.read_noise_e": -1}),
        "em_gain 1e400 (parses as inf)": edit(good, raw=True, **{"camera.em_gain": "1e400"}),
        "baseline 1e400": edit(good, raw=True, **{"camera.baseline_adu": "-1e400"}),
        "huge integer qe": edit(good, raw=True, **{"camera.qe": "1" + "0" * 400}),
        "index 2**63": edit(good, index=2**63),
        "index 2**53": edit(good, index=2**53),
        "index 10**15 (a jump that would poison the stream)": edit(good, index=10**15),
        "timestamp beyond int64": edit(good, timestamp_ns=2**64),
        "duplicate index": frame(2, movie[2], camera),
        "4×4 frame": frame(3, movie[3, :4, :4].copy(), camera),
        "NaN pixel": frame(3, nan_frame, camera),
        "gap of 10**18 frames": gap(3, 10**18),
        "gap beyond 2**53": gap(2**53 - 5, 10),
        "gap of 2e9 frames": gap(3, 2 * 10**9),
        "gap at 2**63": gap(2**63, 1),
    }
    for parts in bad.values():
        push.send_multipart(parts, copy=False)
    # The stream goes on: a real gap (frames 5, 6 lost upstream), then frames 3..11 minus those.
    sent = [3, 4, 7, 8, 9, 10, 11]
    for i in sent[:2]:
        push.send_multipart(frame(i, movie[i], camera), copy=False)
    push.send_multipart(gap(5, 2))
    for i in sent[2:]:
        push.send_multipart(frame(i, movie[i], camera), copy=False)
    push.send_multipart(encode(EosMsg(last_index=11)))
    thread.join(timeout=120)
    assert not thread.is_alive(), "the worker did not finish"
    assert not failure, f"the worker crashed: {failure[0]!r}"

    summary = WorkerSummary.load(tmp_path / "run" / "worker_summary.json")
    assert summary is not None
    assert summary.rejected_messages == len(bad)
    assert summary.frames_received == summary.frames_processed == 3 + len(sent)
    assert (summary.gaps, summary.dropped_upstream, summary.last_frame) == (1, 2, 11)
    csv = read_thunderstorm_csv(tmp_path / "run" / CSV_NAME)
    assert set(np.unique(csv["frame"]).tolist()) == {0, 1, 2, *sent}
    events = []
    while (msg := sub.recv(timeout_ms=200)) is not None:
        if isinstance(msg, ErrorMsg) and msg.code == "rejected_message":
            events.append(msg.message)
    assert len(events) >= len(bad) - 4  # the door's own rejections, one event each
    joined = "\n".join(events)
    for needle in ("em_gain", "qe", "pixel_size_nm", "2**53", "jumps", "4×4", "NaN", "gap of"):
        assert needle in joined, needle
    for s in (puller, publisher, sub):
        s.close()
    push.close(linger=0)


def test_a_jump_announced_by_a_gap_is_admitted() -> None:
    from live_decode.inference.door import DoorLimits, FrameDoor

    door = FrameDoor(DoorLimits(max_index_jump_frames=10))
    cam = CameraMeta(100, 100, 45, 300, 0.9, 20)
    pix = np.zeros((16, 16), np.uint16)

    def f(i: int) -> FrameMsg:
        return FrameMsg(index=i, timestamp_ns=0, camera=cam, pixels=pix)

    assert door.frame_problem(f(0)) is None
    assert door.frame_problem(f(11)) is None  # 10 skipped: within the limit
    assert "jumps 11" in (door.frame_problem(f(23)) or "")
    assert door.last_index == 11  # the rejected frame did not move the expected index
    assert door.gap_problem(GapMsg(first=12, count=1000)) is None
    assert door.frame_problem(f(1012)) is None  # announced
    assert door.frame_problem(f(1013)) is None
    assert "jumps" in (door.frame_problem(f(2013)) or "")  # the announcement was used up
    assert door.frame_problem(replace(f(1014), camera=replace(cam, qe=0.0))) is not None
    assert door.last_index == 1013
