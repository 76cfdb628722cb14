"""``live-decode localize MOVIE``: offline analysis through the worker code, as fast as it goes."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import Progress

from live_decode import strict_json
from live_decode.pipeline.offline import localize_files


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("movie", type=Path, nargs="+", help="TIFF / OME-TIFF movie(s), in order")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="camera/model config for files without metadata (default: demo)",
    )
    p.add_argument(
        "--model", type=Path, default=None, help="model file (.pt); default: config or bundled"
    )
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument(
        "--device", default=None, help="auto (CUDA if present), cpu, cuda, cuda:N; default: config"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in --out (refused otherwise)",
    )
    p.add_argument(
        "--ignore-model-mismatch",
        action="store_true",
        help="localize even if the model card does not fit the camera (a warning is kept)",
    )
    dask = p.add_mutually_exclusive_group()
    dask.add_argument(
        "--workers",
        type=int,
        default=None,
        help="localize on a local Dask cluster of N processes (one thread each); needs [dask]",
    )
    dask.add_argument(
        "--scheduler",
        default=None,
        help="address of a running Dask scheduler (tcp://HOST:PORT) to localize on",
    )
    p.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        help="frames per Dask task (with --workers/--scheduler; default 256)",
    )


def run(args: argparse.Namespace) -> int:
    if args.workers is not None or args.scheduler is not None:
        return _run_dask(args)
    with Progress() as bar:
        task = bar.add_task("localize", total=None)
        summary = localize_files(
            args.movie,
            args.out,
            config=args.config,
            model=args.model,
            device=args.device,
            ignore_model_mismatch=args.ignore_model_mismatch,
            overwrite=args.overwrite,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print(strict_json.dumps(summary, indent=2))
    return 0


def _run_dask(args: argparse.Namespace) -> int:
    from live_decode.pipeline.distributed import DEFAULT_CHUNK_FRAMES, localize_many

    with Progress() as bar:
        task = bar.add_task("chunks", total=None)
        summary = localize_many(
            args.movie,
            args.out,
            workers=args.workers,
            scheduler=args.scheduler,
            chunk_frames=args.chunk_frames or DEFAULT_CHUNK_FRAMES,
            config=args.config,
            model=args.model,
            device=args.device,
            ignore_model_mismatch=args.ignore_model_mismatch,
            overwrite=args.overwrite,
            chunk_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print(strict_json.dumps(summary, indent=2))
    return 0
