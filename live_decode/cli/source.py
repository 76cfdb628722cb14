"""``live-decode source``: the source process (camera / replay / simulated microscope)."""

from __future__ import annotations

import argparse
from pathlib import Path

from live_decode.cli.run import add_config_argument
from live_decode.pipeline.source_process import SourceOptions, run_source


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--frames-endpoint", required=True, help="where to bind the frame PUSH")
    p.add_argument("--preview-endpoint", default=None, help="where to bind the preview PUB")
    p.add_argument("--control-endpoint", default=None, help="where to bind the control REP")
    p.add_argument(
        "--results-endpoint",
        default=None,
        help="the worker's results PUB (for the density controller)",
    )
    p.add_argument("--replay", type=Path, nargs="+", default=None, help="replay these movies")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="replay at camera speed, dropping frames like a camera",
    )
    p.add_argument(
        "--no-raw", action="store_true", help="do not record the frames as <out>/raw.ome.tif"
    )
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    p.add_argument("--out", type=Path, default=None, help="run directory for source_summary.json")
    p.add_argument(
        "--wait-for-worker",
        type=float,
        default=None,
        metavar="S",
        help="describe the camera to the worker and start acquiring only once it answers ready "
        "(needs --results-endpoint); exit 2 if it refuses its model, 1 after S seconds",
    )


def run(args: argparse.Namespace) -> int:
    return run_source(
        SourceOptions(
            frames_endpoint=args.frames_endpoint,
            config=args.config,
            preview_endpoint=args.preview_endpoint,
            control_endpoint=args.control_endpoint,
            results_endpoint=args.results_endpoint,
            replay=tuple(args.replay) if args.replay else None,
            realtime=args.realtime,
            frames=args.frames,
            seconds=args.seconds,
            out=args.out,
            record_raw=not args.no_raw,
            wait_for_worker_s=args.wait_for_worker,
        )
    )
