"""``live-decode view ADDRESS|RUN_DIR``: watch a run live, on this host or another one.

Connects to the worker's results and the source's preview and control ports on ADDRESS; a run
already going is joined where it is. Given a run directory, it joins that run at the endpoints
it recorded (``endpoints.json``) while it runs, and shows its files once it has finished. A run on
another host needs CURVE keys (``--keys DIR`` with ``client.key_secret`` and ``server.key`` from
``live-decode keys``). Qt is imported only when the
window opens, so this module (and ``live-decode --help``) works without a display.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from live_decode.display import check_display
from live_decode.endpoints import (
    DEFAULT_CONTROL_PORT,
    DEFAULT_PREVIEW_PORT,
    DEFAULT_RESULTS_PORT,
    RunEndpoints,
)
from live_decode.errors import LiveDecodeError, ModelCardError

if TYPE_CHECKING:
    from live_decode.config import QualityConfig
    from live_decode.viewer.run_files import RecordedRun

HELP = (
    "Watch a run live, or open a finished one: raw frames, super-resolution image, density, "
    "laser, health, controls."
)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535 (0 = do not connect), got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "address",
        metavar="ADDRESS|RUN_DIR",
        help="host of the run (127.0.0.1, a host name or [IPv6]), or a run directory: joins it "
        "while it runs (at the endpoints it recorded), else shows its files",
    )
    p.add_argument(
        "--results-port", type=_port, default=DEFAULT_RESULTS_PORT, help="worker results (PUB)"
    )
    p.add_argument(
        "--preview-port",
        type=_port,
        default=DEFAULT_PREVIEW_PORT,
        help="source preview (PUB); 0 = no raw frame panel",
    )
    p.add_argument(
        "--control-port",
        type=_port,
        default=DEFAULT_CONTROL_PORT,
        help="source control (REP); 0 = controls disabled",
    )
    for name in ("results", "preview", "control"):
        p.add_argument(
            f"--{name}-endpoint",
            default=None,
            help=f"full {name} endpoint (tcp://HOST:PORT, ipc://PATH): overrides ADDRESS and port",
        )
    p.add_argument(
        "--keys",
        type=Path,
        default=None,
        help="CURVE key folder with client.key_secret and server.key (remote runs)",
    )
    p.add_argument("--pixel-size-nm", type=_positive, default=10.0, help="render pixel size")
    p.add_argument("--gaussian", action="store_true", help="render each localization with its σ")
    p.add_argument("--min-prob", type=float, default=0.0, help="draw only prob >= this")
    p.add_argument(
        "--colour",
        choices=("density", "z", "time"),
        default="density",
        help="super-resolution colour: one scale for the count (density), or hue = each "
        "pixel's mean z (3-D runs) or frame (time), brightness = count",
    )
    p.add_argument(
        "--drift-corrected",
        action="store_true",
        help="show the image corrected by the live drift estimate (files stay raw)",
    )
    p.add_argument(
        "--quality-every",
        type=int,
        default=None,
        metavar="FRAMES",
        help="recompute NeNA and FRC every this many frames (default: quality.every_frames "
        "of the default config, 500; use the run's value)",
    )
    p.add_argument(
        "--target",
        type=float,
        default=1.0,
        help="density target (µm⁻²) shaded on the trace until the controller reports one",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model file (.pt) or its .card.json, shown as the model line",
    )
    p.add_argument("--seconds", type=_positive, default=None, help="close after this long")
    p.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        help="save the window as this PNG before closing (needs --seconds)",
    )


def model_line(path: Path) -> str:
    """The model card's one-line summary, from a model file or its ``.card.json``."""
    if not path.is_file():
        raise ModelCardError(f"{path}: model file not found")
    from live_decode.model.checkpoint import ModelCard, load_model  # torch: only when asked

    if path.name.endswith(".json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return ModelCard(**data).summary()
        except (ValueError, TypeError) as exc:
            raise ModelCardError(f"{path}: not a model card ({exc})") from None
    return load_model(path)[1].summary()


def run(args: argparse.Namespace) -> int:
    if args.screenshot is not None and args.seconds is None:
        raise LiveDecodeError(
            "--screenshot needs --seconds S: how long to watch before the picture"
        )
    check_display()
    from live_decode.viewer.qt_check import check_platform_plugin

    check_platform_plugin()  # Qt would abort without a word to Python when xcb libraries miss
    from live_decode.transport.curve import client_keys
    from live_decode.viewer.accumulator import RenderSettings

    run_dir = Path(args.address)
    target = _run_directory(run_dir, args) if run_dir.is_dir() else _endpoints(args)
    curve = client_keys(args.keys) if args.keys is not None else None
    line = model_line(args.model) if args.model is not None else ""
    settings = RenderSettings(
        pixel_size_nm=args.pixel_size_nm,
        gaussian=args.gaussian,
        min_prob=args.min_prob,
        colour=args.colour,
        drift_corrected=args.drift_corrected,
    )
    quality = _quality(args.quality_every)
    from live_decode.viewer.app import run_app  # Qt from here on
    from live_decode.viewer.window import ViewerOptions

    return run_app(
        target,
        curve=curve,
        settings=settings,
        model_line=line,
        options=ViewerOptions(target_per_um2=args.target),
        quality=quality,
        seconds=args.seconds,
        screenshot=args.screenshot,
    )


def _quality(every_frames: int | None) -> QualityConfig:
    from pydantic import ValidationError

    from live_decode.config import QualityConfig

    if every_frames is None:
        return QualityConfig()
    try:
        return QualityConfig(every_frames=every_frames)
    except ValidationError:
        raise LiveDecodeError(
            f"--quality-every {every_frames}: give at least 10 frames between quality updates"
        ) from None


def _run_directory(run_dir: Path, args: argparse.Namespace) -> RunEndpoints | RecordedRun:
    """A live run's recorded endpoints, else the run read from its files."""
    from live_decode.io.run_dir import read_endpoints, run_status
    from live_decode.viewer.run_files import load_run

    status = run_status(run_dir)
    if status == "live":
        record = read_endpoints(run_dir)
        ep = record.endpoints
        if record.curve and args.keys is None:
            raise LiveDecodeError(
                f"the run in {run_dir} uses CURVE keys: pass --keys DIR with client.key_secret "
                "and server.key (from `live-decode keys`)"
            )
        print(f"joining the live run in {run_dir}: results at {ep.results}", file=sys.stderr)
        return ep
    if status == "stale":
        print(
            f"{run_dir}: no summary.json and no live run: showing the files it has so far",
            file=sys.stderr,
        )
    return load_run(run_dir)


def _endpoints(args: argparse.Namespace) -> RunEndpoints:
    on_host = RunEndpoints.on_host(
        args.address,
        results_port=args.results_port,
        preview_port=args.preview_port or None,
        control_port=args.control_port or None,
    )
    return RunEndpoints(
        results=args.results_endpoint or on_host.results,
        preview=args.preview_endpoint or on_host.preview,
        control=args.control_endpoint or on_host.control,
    )
