"""``live-decode worker``: the inference worker process."""

from __future__ import annotations

import argparse
from pathlib import Path

from live_decode.cli.run import add_config_argument
from live_decode.pipeline.worker_process import WorkerOptions, run_worker


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    p.add_argument("--frames-endpoint", required=True, help="the source's frame PUSH socket")
    p.add_argument("--results-endpoint", required=True, help="where to bind the results PUB")
    p.add_argument("--out", type=Path, required=True, help="run directory for the files")
    p.add_argument("--model", type=Path, default=None, help="model file (default: config/bundled)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (default: config)")
    p.add_argument("--resume", action="store_true", help="append to the run's existing files")
    p.add_argument(
        "--ignore-model-mismatch",
        action="store_true",
        help="run although the model card does not match the camera",
    )
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after S idle seconds")


def run(args: argparse.Namespace) -> int:
    return run_worker(
        WorkerOptions(
            frames_endpoint=args.frames_endpoint,
            results_endpoint=args.results_endpoint,
            out=args.out,
            config=args.config,
            model=args.model,
            device=args.device,
            resume=args.resume,
            ignore_model_mismatch=args.ignore_model_mismatch,
            idle_timeout_s=args.idle_timeout,
        )
    )
