"""``live-decode view``: arguments, the no-display error, the model line, a timed screenshot."""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from live_decode.cli import view
from live_decode.display import check_display, display_available
from live_decode.errors import LiveDecodeError, ModelCardError

from .synthetic import FOV_PX, SyntheticRun, make_locs


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="live-decode view")
    view.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("env", "platform", "ok"),
    [
        ({}, "linux", False),
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", True),
        ({}, "darwin", True),
        ({}, "win32", True),
    ],
)
def test_display_detection(env: dict[str, str], platform: str, ok: bool) -> None:
    assert display_available(env, platform) is ok


def test_no_display_error_says_what_to_do() -> None:
    with pytest.raises(LiveDecodeError, match="QT_QPA_PLATFORM=offscreen"):
        check_display({}, "linux")


def test_screenshot_needs_seconds() -> None:
    with pytest.raises(LiveDecodeError, match="--seconds"):
        view.run(_parse("127.0.0.1", "--screenshot", "x.png"))


def test_arguments_and_defaults() -> None:
    args = _parse("10.0.0.5", "--control-port", "0", "--gaussian", "--pixel-size-nm", "15")
    assert (args.results_port, args.preview_port, args.control_port) == (5557, 5556, 0)
    assert args.gaussian and args.pixel_size_nm == 15.0
    with pytest.raises(SystemExit):
        _parse("10.0.0.5", "--results-port", "70000")
    args = _parse("127.0.0.1", "--results-endpoint", "ipc:///tmp/r", "--control-port", "0")
    assert args.results_endpoint == "ipc:///tmp/r" and args.preview_endpoint is None


def test_model_line_from_a_card_file(tmp_path: Path) -> None:
    from live_decode.config import Config
    from live_decode.model.checkpoint import ModelCard

    card = ModelCard("tiny", Config().model_dump(mode="json"), {}, 16, True, 1000)
    path = tmp_path / "tiny.card.json"
    path.write_text(json.dumps(asdict(card)), encoding="utf-8")
    assert view.model_line(path).startswith("tiny: temporal, 16 filters, PSF ")
    with pytest.raises(ModelCardError, match="not found"):
        view.model_line(tmp_path / "missing.pt")


@pytest.mark.qt
def test_timed_screenshot(
    qapp: object, synthetic_run: SyntheticRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    stop = threading.Event()

    def stream() -> None:
        f = 0
        while not stop.is_set():
            synthetic_run.publish(make_locs(f, [(1000.0 + f % 50, 800.0)] * 5), [f], [0.2])
            synthetic_run.publish_preview(np.full(FOV_PX, 100 + f % 7, np.uint16), f)
            f += 1
            time.sleep(0.005)

    thread = threading.Thread(target=stream)
    thread.start()
    shot = tmp_path / "view.png"
    results_port = synthetic_run.results.endpoint.rsplit(":", 1)[1]
    preview_port = synthetic_run.preview.endpoint.rsplit(":", 1)[1]
    try:
        args = _parse(
            "127.0.0.1",
            "--results-endpoint",
            synthetic_run.results.endpoint,  # as `live-decode run` passes it
            "--results-port",
            results_port,
            "--preview-port",
            preview_port,
            "--control-port",
            "0",
            "--seconds",
            "1",
            "--screenshot",
            str(shot),
        )
        started = time.monotonic()
        assert view.run(args) == 0
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join(5)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = {t.name for t in threading.enumerate()}
    assert "viewer-receiver" not in names
