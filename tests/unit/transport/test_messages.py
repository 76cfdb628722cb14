"""Wire protocol: round trips of every kind, zero-copy, and rejection of malformed messages."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import zmq

from live_decode.errors import ProtocolError
from live_decode.messages import (
    FRAME_DTYPES,
    LOC_DTYPE,
    CameraMeta,
    EosMsg,
    ErrorMsg,
    EventMsg,
    FrameMsg,
    FrameStats,
    GapMsg,
    HeartbeatMsg,
    ImageMsg,
    Limits,
    LocsMsg,
    Message,
    StatsMsg,
    WorkerStats,
    decode,
    empty_locs,
    encode,
)

WORKER = WorkerStats(fps=812.5, latency_ms=3.25, queue_depth=2, dropped_upstream=7)
STATS = (
    FrameStats(
        frame=4,
        count=3,
        density_per_um2=0.75,
        mean_photons=2500.0,
        mean_bg=60.0,
        mean_sigma_nm=22.5,
    ),
    FrameStats(
        frame=5,
        count=0,
        density_per_um2=0.0,
        mean_photons=math.nan,
        mean_bg=math.nan,
        mean_sigma_nm=math.nan,
    ),
)


def _locs(n: int) -> np.ndarray[Any, np.dtype[np.void]]:
    locs = empty_locs(n)
    locs["frame"] = np.arange(n) // 2
    locs["x_nm"] = np.linspace(0, 6400, n)
    locs["photons"] = 1000.0
    return locs


def _as_frames(parts: list[bytes | memoryview]) -> list[zmq.Frame]:
    """What ``recv_multipart(copy=False)`` hands the receiver."""
    return [zmq.Frame(bytes(p)) for p in parts]


@pytest.mark.parametrize(
    "msg",
    [
        GapMsg(first=10, count=3, seq=5),
        EosMsg(last_index=99, seq=1),
        EosMsg(last_index=None),
        ErrorMsg(code="camera_lost", message="the camera stopped answering", seq=2),
        EventMsg(source="control", name="target", message="target 1.2 /µm²", frame=41, seq=4),
        EventMsg(source="control", name="mode", message="mode auto"),
        HeartbeatMsg(timestamp_ns=1_700_000_000_000_000_000, seq=9),
        StatsMsg(frame_stats=STATS[:1], worker=WORKER, seq=3),
    ],
    ids=lambda m: f"{m.kind}-{m.seq}",
)
def test_header_only_kinds_round_trip(msg: Message) -> None:
    parts = encode(msg)
    assert len(parts) == 1
    assert decode(_as_frames(parts)) == msg
    assert decode(parts) == msg  # plain bytes decode as well


@pytest.mark.parametrize("dtype", sorted(FRAME_DTYPES))
def test_frame_round_trip(dtype: str, camera: CameraMeta) -> None:
    pixels = (np.arange(48 * 64) % 250).astype(dtype).reshape(48, 64)
    msg = FrameMsg(index=7, timestamp_ns=123_456, camera=camera, pixels=pixels, seq=11)
    out = decode(_as_frames(encode(msg)))
    assert isinstance(out, FrameMsg)
    assert (out.index, out.timestamp_ns, out.seq) == (7, 123_456, 11)
    assert out.camera == camera
    assert out.pixels.dtype == np.dtype(dtype) and out.pixels.shape == (48, 64)
    np.testing.assert_array_equal(out.pixels, pixels)


def test_frame_encode_and_decode_do_not_copy_the_pixels(camera: CameraMeta) -> None:
    pixels = np.zeros((512, 512), np.uint16)
    header, payload = encode(FrameMsg(index=0, timestamp_ns=0, camera=camera, pixels=pixels))
    assert np.shares_memory(np.frombuffer(payload, np.uint16), pixels)

    received = zmq.Frame(bytes(payload))
    out = decode([zmq.Frame(header), received])
    assert isinstance(out, FrameMsg)
    assert np.shares_memory(out.pixels, np.frombuffer(received.buffer, np.uint16))
    assert out.pixels.flags.writeable  # the receiver owns the buffer


def test_locs_round_trip_keeps_rows_stats_and_nan_means() -> None:
    locs = _locs(5)
    msg = LocsMsg(locs=locs, frame_stats=STATS, worker=WORKER, seq=4)
    header, payload = encode(msg)
    assert (
        json.loads(bytes(header))["frame_stats"][1]["mean_photons"] is None
    )  # NaN travels as null
    out = decode(_as_frames([header, payload]))
    assert isinstance(out, LocsMsg)
    assert out.locs.dtype == LOC_DTYPE
    np.testing.assert_array_equal(out.locs, locs)
    assert out.worker == WORKER and out.seq == 4
    assert out.frame_stats[0] == STATS[0]
    assert math.isnan(out.frame_stats[1].mean_photons)


def test_empty_locs_batch_round_trips() -> None:
    out = decode(encode(LocsMsg(locs=empty_locs(), frame_stats=(), worker=WORKER)))
    assert isinstance(out, LocsMsg) and len(out.locs) == 0 and out.frame_stats == ()


@pytest.mark.parametrize(
    ("pixels", "match"),
    [
        (np.zeros((2, 4, 4), np.uint16), "2-D"),
        (np.zeros((4, 4), np.float64), "not sendable"),
    ],
)
def test_encode_refuses_unsendable_frames(
    pixels: np.ndarray[Any, Any], match: str, camera: CameraMeta
) -> None:
    with pytest.raises(ProtocolError, match=match):
        encode(FrameMsg(index=0, timestamp_ns=0, camera=camera, pixels=pixels))


def test_encode_refuses_nan_metadata_and_foreign_locs(camera: CameraMeta) -> None:
    bad = CameraMeta(**{**camera.__dict__, "exposure_ms": math.nan})
    with pytest.raises(ProtocolError, match="JSON"):
        encode(FrameMsg(index=0, timestamp_ns=0, camera=bad, pixels=np.zeros((4, 4), np.uint16)))
    with pytest.raises(ProtocolError, match="LOC_DTYPE"):
        encode(LocsMsg(locs=np.zeros(3, np.float32), frame_stats=(), worker=WORKER))


def test_big_endian_and_strided_frames_are_sent_as_little_endian(camera: CameraMeta) -> None:
    pixels = np.arange(64, dtype=">u2").reshape(8, 8)[:, ::2]
    out = decode(encode(FrameMsg(index=0, timestamp_ns=0, camera=camera, pixels=pixels)))
    assert isinstance(out, FrameMsg)
    np.testing.assert_array_equal(out.pixels, pixels)


def test_image_round_trip_keeps_pixels_and_their_size() -> None:
    pixels = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    msg = ImageMsg(pixels, pixel_size_nm=12.5, frames=40, last_frame=41, run_id=7, seq=3)
    out = decode(encode(msg))
    assert isinstance(out, ImageMsg)
    np.testing.assert_array_equal(out.pixels, pixels)
    assert (out.pixel_size_nm, out.frames, out.last_frame, out.run_id, out.seq) == (
        12.5,
        40,
        41,
        7,
        3,
    )


@pytest.mark.parametrize(
    ("pixels", "match"),
    [
        (np.zeros((3, 4), np.float64), "float32"),
        (np.zeros((2, 3, 4), np.float32), "2-D"),
        (np.zeros((0, 4), np.float32), "not empty"),
    ],
)
def test_encode_refuses_unsendable_images(pixels: np.ndarray, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        encode(ImageMsg(pixels, pixel_size_nm=12.5, frames=1, last_frame=0))


def _image_header(**changes: Any) -> bytes:
    header = {
        "v": 1,
        "kind": "image",
        "seq": 0,
        "shape": [2, 2],
        "pixel_size_nm": 25.0,
        "frames": 3,
        "last_frame": 2,
        "run_id": 1,
    }
    header.update(changes)
    return json.dumps({k: v for k, v in header.items() if v is not ...}).encode()


IMG = np.ones(4, np.float32).tobytes()


# --------------------------------------------------------------------------- rejection table
def _frame_header(**changes: Any) -> bytes:
    header = {
        "v": 1,
        "kind": "frame",
        "seq": 0,
        "index": 0,
        "timestamp_ns": 0,
        "shape": [4, 4],
        "dtype": "uint16",
        "camera": {
            "pixel_size_nm": 100,
            "baseline_adu": 100,
            "e_per_adu": 45,
            "em_gain": 300,
            "qe": 0.9,
            "exposure_ms": 20,
        },
    }
    header.update(changes)
    return json.dumps({k: v for k, v in header.items() if v is not ...}).encode()


PIX = bytes(32)  # 4 x 4 uint16
BAD = [
    ("empty", [], "empty message"),
    ("not json", [b"\x00not json"], "not UTF-8 JSON"),
    ("not utf-8", [b"\xff\xfe"], "not UTF-8 JSON"),
    ("not an object", [b"[1, 2, 3]"], "JSON object"),
    ("nan constant", [b'{"v": 1, "kind": "heartbeat", "seq": 0, "timestamp_ns": NaN}'], "JSON"),
    ("wrong version", [b'{"v": 2, "kind": "eos", "seq": 0}'], "version 2"),
    ("no version", [b'{"kind": "eos", "seq": 0}'], "version None"),
    ("unknown kind", [b'{"v": 1, "kind": "pickle", "seq": 0}'], "unknown message kind 'pickle'"),
    ("negative seq", [b'{"v": 1, "kind": "eos", "seq": -1, "last_index": 1}'], "seq must be >="),
    ("bool seq", [b'{"v": 1, "kind": "eos", "seq": true, "last_index": 1}'], "seq must be an int"),
    ("missing key", [b'{"v": 1, "kind": "gap", "seq": 0, "first": 3}'], "count is missing"),
    ("zero gap", [b'{"v": 1, "kind": "gap", "seq": 0, "first": 3, "count": 0}'], "count must be"),
    ("extra part", [b'{"v": 1, "kind": "eos", "seq": 0, "last_index": null}', b"x"], "1 part"),
    ("truncated frame", [_frame_header()], "2 part"),
    ("size mismatch", [_frame_header(), PIX[:-2]], "needs 32 B"),
    ("shape mismatch", [_frame_header(shape=[4, 5]), PIX], "needs 40 B"),
    ("3-D shape", [_frame_header(shape=[2, 2, 4]), PIX], r"\[height, width\]"),
    ("zero shape", [_frame_header(shape=[0, 4]), b""], "positive"),
    ("float64 frame", [_frame_header(dtype="float64"), bytes(128)], "not allowed"),
    ("object dtype", [_frame_header(dtype="object"), PIX], "not allowed"),
    ("no camera", [_frame_header(camera=...), PIX], "camera is missing"),
    ("camera qe text", [_frame_header(camera={"qe": "high"}), PIX], "camera.pixel_size_nm"),
    ("string index", [_frame_header(index="7"), PIX], "index must be an integer"),
    (
        "1e400 parses as inf",
        [_frame_header().replace(b'"em_gain": 300', b'"em_gain": 1e400'), PIX],
        "em_gain must be a finite number",
    ),
    (
        "integer beyond float",
        [_frame_header().replace(b'"qe": 0.9', b'"qe": 1' + b"0" * 400), PIX],
        "qe must be a finite number",
    ),
    (
        "locs size",
        [b'{"v":1,"kind":"locs","seq":0,"n":2,"frame_stats":[],"worker":{}}', b""],
        "n=2",
    ),
    ("image size", [_image_header(), IMG[:-4]], "needs 16 B"),
    ("image shape", [_image_header(shape=[2, 2, 1]), IMG], r"\[height, width\] > 0"),
    ("image pixel size", [_image_header(pixel_size_nm=0), IMG], "pixel_size_nm must be > 0"),
    ("image frames", [_image_header(frames=...), IMG], "frames is missing"),
    ("image no payload", [_image_header()], "2 part"),
    (
        "image NaN",
        [_image_header(), np.array([1, np.nan, 0, 0], np.float32).tobytes()],
        "NaN or infinite",
    ),
    (
        "stats row",
        [b'{"v":1,"kind":"stats","seq":0,"frame_stats":[3],"worker":{}}'],
        r"frame_stats\[0\]",
    ),
]


@pytest.mark.parametrize(("parts", "match"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_decode_rejects(parts: list[bytes], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode(parts)


def test_decode_enforces_size_limits() -> None:
    eos = b'{"v": 1, "kind": "eos", "seq": 0, "last_index": null, "pad": "' + b"x" * 64 + b'"}'
    with pytest.raises(ProtocolError, match=r"header of \d+ B exceeds 64 B"):
        decode([eos], Limits(max_header_bytes=64))
    with pytest.raises(ProtocolError, match="frame payload of 32 B exceeds 16 B"):
        decode([_frame_header(), PIX], Limits(max_frame_bytes=16))
    locs = encode(LocsMsg(locs=_locs(2), frame_stats=(), worker=WORKER))
    with pytest.raises(ProtocolError, match="locs payload of 96 B exceeds 48 B"):
        decode(locs, Limits(max_locs_bytes=48))
    with pytest.raises(ProtocolError, match="image payload of 16 B exceeds 8 B"):
        decode([_image_header(), IMG], Limits(max_image_bytes=8))
