"""``live-decode evaluate MODEL MOVIE GROUND_TRUTH``: localize a movie and score it.

Prints a table (or one JSON object with ``--json``) and, with ``--out``, writes PNG plots: RMSE
against √CRLB binned by photons, and predicted σ against the measured error. The scoring is
:func:`live_decode.evaluation.report.evaluate_localizations`; images (NMSE, FRC) are scored by
:func:`live_decode.pipeline.image_eval.score_images`; this module parses, localizes the file and
prints. Models of every kind are scored alike; ``--also MODEL`` scores more models on the same
movie in the same run and prints them side by side.

Each model's frames/s is measured in the same run, on the same device: the wall time of its
inference (network and detection, :func:`~live_decode.inference.offline.localize_movie`) over the
whole movie after a two-frame warm-up, without the time spent collecting images for scoring.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from live_decode import strict_json
from live_decode.evaluation.plots import plot_evaluation
from live_decode.evaluation.report import (
    EvaluationReport,
    check_ground_truth_fits,
    evaluate_localizations,
)
from live_decode.inference.offline import localize_movie
from live_decode.io.thunderstorm import read_ground_truth_csv
from live_decode.messages import CameraMeta, Localizations
from live_decode.model.card import ModelCard
from live_decode.model.device import resolve_device
from live_decode.model.seam import NetworkLocalizer
from live_decode.pipeline.image_eval import (
    PAPER_UPSAMPLING,
    ImageCollector,
    ImageScores,
    score_images,
)
from live_decode.pipeline.kinds import LocalizerOptions, load_localizer
from live_decode.sources.base import camera_from_config
from live_decode.sources.replay import ReplaySource


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="model file (.pt) with its model card")
    p.add_argument("movie", type=Path, help="TIFF / OME-TIFF movie in ADU")
    p.add_argument("ground_truth", type=Path, help="ground-truth CSV as `simulate` writes it")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--out", type=Path, default=None, help="directory for PNG plots")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="detection threshold instead of the card's (DECODE: raw_threshold, Deep-STORM: "
        "model.deepstorm.threshold)",
    )
    p.add_argument(
        "--max-lateral-nm", type=float, default=250.0, help="matching radius in x, y (nm)"
    )
    p.add_argument("--max-axial-nm", type=float, default=500.0, help="matching radius in z (nm)")
    p.add_argument(
        "--image-upsampling",
        type=int,
        default=None,
        help="grid of the image scores (NMSE, FRC): camera pixel / U (default: the model's own "
        f"image grid, else ×{PAPER_UPSAMPLING} as in Deep-STORM's paper)",
    )
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--also",
        type=Path,
        action="append",
        default=[],
        metavar="MODEL",
        help="score this model too, on the same movie in the same run (repeatable)",
    )


@dataclass(frozen=True)
class InferenceTiming:
    """One model's inference over one movie: frames, wall seconds (after warm-up), where."""

    frames: int
    seconds: float
    device: str
    torch_threads: int

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else math.inf

    def to_dict(self) -> dict[str, object]:
        return {
            "frames": self.frames,
            "seconds": self.seconds,
            "device": self.device,
            "torch_threads": self.torch_threads,
        }


def camera_from_card(card: ModelCard) -> CameraMeta:
    """The camera the model was trained for (for movies without camera metadata)."""
    return camera_from_config(card.parsed_config)


def read_movie(localizer: NetworkLocalizer, movie: Path) -> tuple[np.ndarray, CameraMeta]:
    """Every frame (T, H, W) of a TIFF movie and its camera (the card's where the file has none)."""
    source = ReplaySource(
        [movie], camera_from_card(localizer.card), config_keys={}, default_label="model card"
    )
    try:
        frames = np.stack([f.pixels for f in iter(source.read, None)])
    finally:
        source.close()
    return frames, source.camera


def score_model(
    localizer: NetworkLocalizer,
    movie: Path,
    gt: np.ndarray,
    args: argparse.Namespace,
) -> tuple[EvaluationReport, ImageScores, InferenceTiming, Localizations]:
    """Localize ``movie`` with one model; its report, image scores, timing and localizations."""
    frames, camera = read_movie(localizer, movie)
    shape = (int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2]))
    px_nm = localizer.pixel_size_nm
    check_ground_truth_fits(gt, args.ground_truth, movie, shape, px_nm)
    upsampling = args.image_upsampling or localizer.image_upsampling or PAPER_UPSAMPLING
    collector = ImageCollector(localizer, upsampling)
    localize_movie(localizer, frames[:2], camera)  # warm-up: frames/s without first-call costs
    started = time.perf_counter()
    locs = localize_movie(localizer, frames, camera, on_output=collector)
    wall_s = time.perf_counter() - started - collector.elapsed_s
    timing = InferenceTiming(shape[0], wall_s, str(localizer.device), torch.get_num_threads())
    report = evaluate_localizations(
        locs,
        gt,
        localizer.config,
        is_3d=localizer.scaling.is_3d,
        max_lateral_nm=args.max_lateral_nm,
        max_axial_nm=args.max_axial_nm,
        frame_shape_px=(shape[1], shape[2]),
    )
    images = score_images(locs, gt, (shape[1], shape[2]), px_nm, upsampling, collector.halves)
    return report, images, timing, locs


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = LocalizerOptions(resolve_device(args.device), threshold=args.threshold)
    gt = read_ground_truth_csv(args.ground_truth)  # first: a bad file fails before the long part
    results = []
    for path in [args.model, *args.also]:
        localizer = load_localizer(path, opts)
        report, images, timing, locs = score_model(localizer, args.movie, gt, args)
        if args.out is not None and path == args.model:
            plot_evaluation(report, locs, gt, args.out)
        results.append((localizer.card, report, images, timing))
    if args.json:
        dicts = [_as_dict(card, r, im, t) for card, r, im, t in results]
        print(strict_json.dumps(dicts[0] if len(dicts) == 1 else {"models": dicts}))
        return 0
    for card, report, images, timing in results:
        _print(report, f"{card.name} ({card.kind}) on {args.movie.name}", images, timing)
    if len(results) > 1:
        _print_comparison(results, args.movie.name)
    return 0


def _as_dict(
    card: ModelCard, report: EvaluationReport, images: ImageScores, timing: InferenceTiming
) -> dict[str, object]:
    return {
        "model": card.name,
        "kind": card.kind,
        **report.to_dict(),
        "images": images.to_dict(),
        "frames_per_s": timing.frames_per_s,
        "inference": timing.to_dict(),
    }


def _print_comparison(
    results: list[tuple[ModelCard, EvaluationReport, ImageScores, InferenceTiming]], movie: str
) -> None:
    from rich.console import Console
    from rich.table import Table

    first = results[0][3]
    table = Table(
        title=f"models on {movie} (one run; frames/s: inference on {first.device}, "
        f"{first.torch_threads} torch thread(s), after warm-up)"
    )
    for col in ("model", "kind", "JI", "RMSE lat nm", "NMSE", "NMSE locs", "FRC nm", "frames/s"):
        table.add_column(col, justify="right")
    for card, report, images, timing in results:
        m = report.metrics
        table.add_row(
            card.name,
            card.kind,
            _cell(m.jaccard, ".3f"),
            _cell(m.rmse_lat_nm, ".1f"),
            _cell(images.nmse, ".3f"),
            _cell(images.nmse_locs, ".3f"),
            _cell(images.frc_nm, ".1f"),
            _cell(timing.frames_per_s, ".1f"),
        )
    Console().print(table)


def _cell(value: object, digits: str = ".4g") -> str:
    """A table cell: ``n/a`` for None (does not apply), ``–`` for NaN (undefined)."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "–" if math.isnan(value) else format(value, digits)
    return str(value)


def _print(
    report: EvaluationReport, title: str, images: ImageScores, timing: InferenceTiming
) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    result = report.to_dict()
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if not isinstance(v, list | dict | bool):
            table.add_row(k, _cell(v))
    for k, v in report.sigma_calibration.to_dict().items():
        table.add_row(f"σ {k}", _cell(v, ".3g"))
    for k, v in images.to_dict().items():
        table.add_row(f"image {k}", _cell(v))
    table.add_row(
        "frames/s",
        f"{timing.frames_per_s:.1f} ({timing.device}, {timing.torch_threads} thread(s))",
    )
    console.print(table)
    if report.photon_bins:
        crlb_table = Table(title="RMSE vs √CRLB by photons (isolated emitters, nm)")
        for col in ("photons", "detected", "RMSE x", "√CRLB x", "RMSE y", "√CRLB y", "flag"):
            crlb_table.add_column(col, justify="right")
        for b in report.photon_bins:
            crlb_table.add_row(
                f"{b.photons_lo:.0f}-{b.photons_hi:.0f}",
                f"{b.n}/{b.n_emitters} ({_cell(b.detected_fraction, '.0%')})",
                _cell(b.rmse_x_nm, ".1f"),
                _cell(b.sqrt_crlb_x_nm, ".1f"),
                _cell(b.rmse_y_nm, ".1f"),
                _cell(b.sqrt_crlb_y_nm, ".1f"),
                "selected" if b.low_detection else "",
            )
        console.print(crlb_table)
    for note in report.notes:
        console.print(f"note: {note}")
