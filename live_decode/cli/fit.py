"""``live-decode fit MOVIE --out DIR``: calibrate → train → localize, for a lab's own microscope."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from live_decode.errors import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("movie", type=Path, nargs="+", help="raw TIFF / OME-TIFF movie(s), in order")
    p.add_argument("--out", type=Path, required=True, help="folder for calibration/, model/, run/")
    p.add_argument("--minutes", type=float, default=None, help="training wall-time budget")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the setup's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--init-from",
        default="default",
        metavar="MODEL",
        help="fine-tune from this model; default: the bundled demo_lite model where its network "
        "fits the setup; 'none': train from scratch",
    )
    p.add_argument(
        "--pixel-size-nm", type=float, default=None, help="camera pixel in the sample, nm"
    )
    p.add_argument("--camera", choices=("emccd", "scmos"), default=None, help="camera type")
    p.add_argument("--dark", type=Path, default=None, help="dark series: baseline, read noise")
    p.add_argument("--qe", type=float, default=None, help="quantum efficiency where known")
    p.add_argument(
        "--no-refine",
        action="store_true",
        help="calibrate without the simulation-based correction of the spot estimators (faster)",
    )
    p.add_argument(
        "--recount-rounds",
        type=int,
        default=1,
        metavar="N",
        help="density recounts during training (default 1, at most 3): after each further "
        "quarter of the budget the network counts the movie, the count is corrected for the "
        "network's undercount on simulated windows, and the setup's density and training "
        "density range are widened where the movie is denser (a spot count saturates); "
        "the extra time is in the up-front estimate",
    )
    p.add_argument(
        "--no-recount",
        action="store_true",
        help="train for calibrate's density and range as they are (same as --recount-rounds 0)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted fit in --out")
    p.add_argument("--overwrite", action="store_true", help="start afresh over an earlier fit")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change the calibrated setup before training (YAML value), e.g. model.size=paper "
        "or training.crop_px=24; repeatable",
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["training.crop_px=24", ...]`` → ``{"training": {"crop_px": 24}}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(f"--set {item!r}: write SECTION.KEY=VALUE, e.g. training.steps=5000")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(value)
    return out


def _num(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "n/a"


def _span(r: list[float]) -> str:
    return f"{r[0]:g}–{r[1]:g}"


def run(args: argparse.Namespace) -> int:
    from live_decode.api.fit import fit

    init: str | Path | None = args.init_from
    if isinstance(init, str) and init.lower() == "none":
        init = None
    elif init != "default":
        init = Path(str(init))
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def on_stage(stage: str, message: str) -> None:
            bar.console.print(f"[bold]{stage}[/bold]: {message}", highlight=False)

        def on_train(step: int, total: int, loss: float) -> None:
            if "train" not in tasks:
                tasks["train"] = bar.add_task("train", total=total, note="")
            bar.update(tasks["train"], completed=step, note=f"loss {loss:.1f}")

        def on_localize(done: int, total: int) -> None:
            if "localize" not in tasks:
                tasks["localize"] = bar.add_task("localize", total=total or None, note="")
            bar.update(tasks["localize"], completed=done, total=total or None)

        result = fit(
            args.movie,
            args.out,
            minutes=args.minutes,
            steps=args.steps,
            device=args.device,
            init_from=init,
            pixel_size_nm=args.pixel_size_nm,
            camera=args.camera,
            dark=args.dark,
            qe=args.qe,
            refine=not args.no_refine,
            resume=args.resume,
            overwrite=args.overwrite,
            overrides=parse_overrides(args.overrides),
            recount_rounds=0 if args.no_recount else args.recount_rounds,
            on_stage=on_stage,
            on_train=on_train,
            on_localize=on_localize,
        )
    m = result.metrics
    print(
        f"held-out accuracy (the training's own simulated test set): Jaccard "
        f"{m.get('jaccard', float('nan')):.3f}, lateral RMSE "
        f"{m.get('rmse_lat_nm', float('nan')):.1f} nm, efficiency "
        f"{m.get('efficiency_lat', float('nan')):.2f}"
    )
    density = result.density
    for r in density.get("recount", []):
        if r["unreliable"]:
            print(
                f"density: calibrate {_num(density.get('calibrate_per_um2'))}, network count "
                f"{r['raw_per_um2']:.2f} (round {r['round']}) not corrected: {r['unreliable']}; "
                f"training range kept, {_span(r['range_before'])} µm⁻²"
            )
            continue
        print(
            f"density: calibrate {_num(density.get('calibrate_per_um2'))}, network count "
            f"{r['raw_per_um2']:.2f} → corrected {r['corrected_per_um2']:.2f} emitters/µm²/frame "
            f"(round {r['round']}); training range {_span(r['range_before'])} → "
            f"{_span(r['range_after'])} µm⁻²"
        )
    print(f"setup: {result.setup}")
    print(f"model: {result.model}")
    print(f"run:   {result.run_dir} ({result.summary.get('localizations')} localizations)")
    print(f"next:  live-decode localize MOVIE --config {result.setup} --model {result.model}")
    return 0
