"""``live-decode evaluate MODEL MOVIE GROUND_TRUTH``: localize a movie and score it.

Prints a table (or one JSON object with ``--json``) and, with ``--out``, writes PNG plots: RMSE
against √CRLB binned by photons, and predicted σ against the measured error. The scoring is
:func:`live_decode.evaluation.report.evaluate_localizations`; this module parses, localizes the
file and prints.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from live_decode import strict_json
from live_decode.evaluation.plots import plot_evaluation
from live_decode.evaluation.report import (
    EvaluationReport,
    check_ground_truth_fits,
    evaluate_localizations,
)
from live_decode.inference.engine import Localizer
from live_decode.inference.offline import localize_movie
from live_decode.io.thunderstorm import read_ground_truth_csv
from live_decode.messages import CameraMeta, Localizations
from live_decode.model.checkpoint import ModelCard, load_model
from live_decode.model.device import resolve_device
from live_decode.sources.base import camera_from_config
from live_decode.sources.replay import ReplaySource


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="model file (.pt) with its model card")
    p.add_argument("movie", type=Path, help="TIFF / OME-TIFF movie in ADU")
    p.add_argument("ground_truth", type=Path, help="ground-truth CSV as `simulate` writes it")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.add_argument("--out", type=Path, default=None, help="directory for PNG plots")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--threshold", type=float, default=None, help="override raw_threshold")
    p.add_argument(
        "--max-lateral-nm", type=float, default=250.0, help="matching radius in x, y (nm)"
    )
    p.add_argument("--max-axial-nm", type=float, default=500.0, help="matching radius in z (nm)")


def camera_from_card(card: ModelCard) -> CameraMeta:
    """The camera the model was trained for (for movies without camera metadata)."""
    return camera_from_config(card.parsed_config)


def localize_file(
    localizer: Localizer, movie: Path
) -> tuple[Localizations, CameraMeta, tuple[int, int, int]]:
    """Offline localization of every frame of a TIFF movie; also its camera and (T, H, W)."""
    source = ReplaySource(
        [movie], camera_from_card(localizer.card), config_keys={}, default_label="model card"
    )
    try:
        frames = np.stack([f.pixels for f in iter(source.read, None)])
    finally:
        source.close()
    shape = (int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2]))
    return localize_movie(localizer, frames, source.camera), source.camera, shape


def run(args: argparse.Namespace) -> int:
    from live_decode.config import PostprocessConfig

    net, card = load_model(args.model, resolve_device(args.device))
    post = card.parsed_config.postprocess
    if args.threshold is not None:
        post = PostprocessConfig(raw_threshold=args.threshold, split_threshold=post.split_threshold)
    localizer = Localizer(net, card, next(net.parameters()).device, post)
    gt = read_ground_truth_csv(args.ground_truth)  # first: a bad file fails before the long part
    locs, _, shape = localize_file(localizer, args.movie)
    px_nm = card.parsed_config.camera.pixel_size_nm
    check_ground_truth_fits(gt, args.ground_truth, args.movie, shape, px_nm)
    report = evaluate_localizations(
        locs,
        gt,
        localizer.config,
        is_3d=localizer.scaling.is_3d,
        max_lateral_nm=args.max_lateral_nm,
        max_axial_nm=args.max_axial_nm,
        frame_shape_px=(shape[1], shape[2]),
    )
    if args.out is not None:
        plot_evaluation(report, locs, gt, args.out)
    if args.json:
        print(strict_json.dumps(report.to_dict()))
        return 0
    _print(report, f"{card.name} on {args.movie.name}")
    return 0


def _cell(value: object, digits: str = ".4g") -> str:
    """A table cell: ``n/a`` for None (does not apply), ``–`` for NaN (undefined)."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "–" if math.isnan(value) else format(value, digits)
    return str(value)


def _print(report: EvaluationReport, title: str) -> None:
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
