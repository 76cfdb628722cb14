"""``live-decode train CONFIG``: train a network on simulations of CONFIG."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from live_decode import strict_json
from live_decode.config import load_config
from live_decode.errors import LiveDecodeError
from live_decode.pipeline.kinds import get_kind

log = logging.getLogger("live_decode.cli.train")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="YAML config (camera, PSF, emitters, training ...)")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="output directory")
    p.add_argument("--name", default="model", help="model name (file <out>/<name>.pt)")
    p.add_argument("--steps", type=int, default=None, help="total step budget (config default)")
    p.add_argument("--minutes", type=float, default=None, help="wall-time budget for this call")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh even though <out> holds a checkpoint (it is replaced)",
    )
    p.add_argument(
        "--single-frame",
        action="store_true",
        help="train without temporal context (for comparison)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        metavar="MODEL",
        help="fine-tune from this model's weights (e.g. the bundled demo_lite.pt) "
        "instead of starting from random ones",
    )
    p.add_argument(
        "--threshold",
        "--raw-threshold",
        dest="raw_threshold",
        type=float,
        default=None,
        help="detection threshold written into the card: DECODE's raw_threshold, Deep-STORM's "
        "model.deepstorm.threshold (default: chosen after training for the best efficiency on "
        "simulated validation windows of the setup)",
    )
    p.add_argument(
        "--split-threshold",
        type=float,
        default=None,
        help="DECODE only: threshold for a second emitter next to a detection (default: chosen "
        "like --threshold)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    steps = args.steps if args.steps is not None else cfg.training.steps
    minutes = args.minutes
    if minutes is None and cfg.training.time_budget_s is not None:
        minutes = cfg.training.time_budget_s / 60.0
    kind = get_kind(cfg.model.kind)
    if kind.trainer is None:
        raise LiveDecodeError(
            f"model kind {kind.name!r} has no trainer here; train it with its own package's tools"
        )
    trainer = kind.trainer(
        cfg,
        args.out,
        device=args.device,
        name=args.name,
        temporal_context=False if args.single_frame else None,
        init_from=args.init_from,
        raw_threshold=args.raw_threshold,
        split_threshold=args.split_threshold,
    )
    if args.resume:
        trainer.load_checkpoint()
        log.info("resumed at step %d", trainer.step)
    elif trainer.checkpoint_path.is_file() and not args.overwrite:
        raise LiveDecodeError(
            f"{trainer.checkpoint_path} exists: pass --resume to continue that training, "
            "--overwrite to start afresh and replace it, or choose another --out."
        )
    log.info(
        "training %s (%s) on %s: %d parameters",
        args.name,
        kind.name,
        trainer.device,
        sum(p.numel() for p in trainer.net.parameters()),
    )
    columns = (
        TextColumn("[bold]train"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.1f}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(
            "train", total=steps, completed=trainer.step, loss=float("nan"), rate=""
        )

        # The estimate after the first steps and the chosen thresholds are logged (stderr)
        # by the trainer, and are in the JSON summary printed at the end.
        def on_progress(step: int, loss: float, _: dict[str, float] | None) -> None:
            sps = step / trainer.elapsed_s if trainer.elapsed_s else 0.0
            progress.update(
                task,
                completed=step,
                loss=loss,
                rate=f"{sps * cfg.training.batch_size:.0f} samples/s",
            )

        final = trainer.run(steps, None if minutes is None else minutes * 60.0, on_progress)
    times = getattr(trainer, "times", None)
    if times is not None:
        final["simulate_share"] = times.simulate_share
    summary: dict[str, object] = {"model": str(args.out / f"{args.name}.pt"), **final}
    estimate = getattr(trainer, "estimate", None)
    if estimate is not None:
        summary["estimate"] = estimate.to_dict()
    train_log = getattr(trainer, "train_log", None)
    if train_log is not None:
        summary["log"] = str(train_log.path)
    choice = getattr(trainer, "thresholds", None)
    if choice is not None:
        summary["thresholds"] = choice.brief()
    print(strict_json.dumps(summary, indent=2))
    return 0
