"""``live-decode evaluate MODEL MOVIE GROUND_TRUTH``: localize a movie and score it.

Prints a table (or one JSON object with ``--json``) and, with ``--out``, writes PNG plots: RMSE
against √CRLB binned by photons, and predicted σ against the measured error.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from live_decode.config import Config
from live_decode.errors import LiveDecodeError
from live_decode.evaluation.crlb import crlb
from live_decode.evaluation.matching import isolated, match_localizations, matched_errors_nm
from live_decode.evaluation.metrics import (
    calibration_curve,
    compute_metrics,
    rmse_vs_crlb,
    sigma_calibration,
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


def evaluate(
    localizer: Localizer,
    locs: Localizations,
    gt: np.ndarray,
    max_lateral_nm: float,
    max_axial_nm: float,
    frame_shape_px: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """All metrics as a JSON-able dict (headline keys first, then the σ and CRLB tables)."""
    match = match_localizations(locs, gt, max_lateral_nm=max_lateral_nm, max_axial_nm=max_axial_nm)
    metrics = compute_metrics(locs, gt, match)
    result: dict[str, Any] = {
        "jaccard": metrics.jaccard,
        "rmse_lat_nm": metrics.rmse_lat_nm,
        "rmse_ax_nm": metrics.rmse_ax_nm,
        "rmse_vol_nm": metrics.rmse_vol_nm,
        "efficiency": metrics.efficiency_lat
        if not localizer.scaling.is_3d
        else metrics.efficiency_vol,
        "n_tp": metrics.n_tp,
        "n_fp": metrics.n_fp,
        "n_fn": metrics.n_fn,
    }
    result["sigma_calibration"] = sigma_calibration(locs, gt, match).to_dict()
    result["rmse_vs_crlb"] = _crlb_table(localizer, locs, gt, match, frame_shape_px)
    return result


def _crlb_table(
    localizer: Localizer,
    locs: Localizations,
    gt: np.ndarray,
    match: Any,
    frame_shape_px: tuple[int, int] | None,
) -> list[dict[str, float]]:
    import torch

    from live_decode.simulation.psf import build_psf

    cfg = localizer.config
    px = cfg.camera.pixel_size_nm
    psf = build_psf(cfg.psf, px)
    xyz = torch.tensor(
        np.stack([gt["x_nm"] / px, gt["y_nm"] / px, gt["z_nm"]], 1), dtype=torch.float32
    )
    bg_mean = float(np.mean(cfg.background.uniform_photons))
    photons = torch.tensor(gt["photons"], dtype=torch.float32).clamp(min=1.0)
    bg = torch.full_like(photons, bg_mean)
    bound = crlb(psf, xyz, photons, bg, cfg.camera, frame_shape_px=frame_shape_px)
    sq = np.stack([bound.x_nm.numpy(), bound.y_nm.numpy(), bound.z_nm.numpy()], 1)
    # The bound is for an emitter alone in its fit window: compare only with those.
    alone = isolated(gt, crlb_isolation_nm(cfg))
    edges = np.quantile(gt["photons"][alone], np.linspace(0, 1, 6)) if alone.any() else []
    edges = np.unique(edges)
    if edges.size < 2:
        return []
    table = rmse_vs_crlb(locs, gt, match, sq, edges, include=alone)
    return [{k: float(row[k]) for k in table.dtype.names or ()} for row in table]


def check_ground_truth_fits(
    gt: np.ndarray,
    gt_path: Path,
    movie_path: Path,
    movie_shape: tuple[int, int, int],
    pixel_size_nm: float,
) -> None:
    """Refuse ground truth that cannot belong to the movie (other frames or field of view)."""
    if not len(gt):
        return
    t, h, w = movie_shape
    last_frame = int(gt["frame"].max())
    x_max, y_max = float(gt["x_nm"].max()), float(gt["y_nm"].max())
    if last_frame >= t or x_max > w * pixel_size_nm or y_max > h * pixel_size_nm:
        raise LiveDecodeError(
            f"{gt_path} does not fit {movie_path} ({t} frames of {h}×{w} px at "
            f"{pixel_size_nm:g} nm): it has frame {last_frame + 1} (1-based) and x, y up to "
            f"{x_max:.0f}, {y_max:.0f} nm. Pass the ground_truth.csv that `simulate` wrote "
            "with this movie."
        )


def crlb_isolation_nm(cfg: Config) -> float:
    """Emitters closer than the CRLB's fit-window half-width overlap: not single emitters."""
    return float(cfg.psf.roi_px // 2) * cfg.camera.pixel_size_nm


def _finite_or_null(value: Any) -> Any:
    """NaN / inf → None, so ``--json`` prints strict JSON (jq, JavaScript) and not ``NaN``."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plots(result: dict[str, Any], locs: Localizations, gt: np.ndarray, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    rows = result["rmse_vs_crlb"]
    if rows:
        fig, ax = plt.subplots(figsize=(5, 4))
        mid = [(r["photons_lo"] + r["photons_hi"]) / 2 for r in rows]
        ax.plot(mid, [r["rmse_x_nm"] for r in rows], "o-", label="RMSE x")
        ax.plot(mid, [r["rmse_y_nm"] for r in rows], "s-", label="RMSE y")
        ax.plot(mid, [r["sqrt_crlb_x_nm"] for r in rows], "k--", label="√CRLB x")
        ax.set(xlabel="photons", ylabel="nm", title="Localization error vs CRLB")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "rmse_vs_crlb.png", dpi=120)
        plt.close(fig)
    match = match_localizations(locs, gt)
    err = matched_errors_nm(locs, gt, match)
    if len(err):
        fig, (ax, curve) = plt.subplots(1, 2, figsize=(9, 4))
        sigma = [np.asarray(locs[f"sigma_{a}_nm"][match.pred_index], np.float64) for a in "xy"]
        ax.scatter(sigma[0], np.abs(err[:, 0]), s=3, alpha=0.4)
        ax.set(xlabel="predicted σx (nm)", ylabel="|error x| (nm)", title="each emitter")
        for axis, (name, marker) in enumerate((("x", "o-"), ("y", "s-"))):
            mean_sigma, rmse = calibration_curve(sigma[axis], err[:, axis])
            curve.plot(mean_sigma, rmse, marker, label=name)
        top = float(np.nanmax(curve.get_xlim() + curve.get_ylim()))
        curve.plot([0, top], [0, top], "k--", lw=1, label="calibrated")
        curve.set(xlabel="mean predicted σ (nm)", ylabel="RMSE (nm)", title="deciles of σ")
        curve.legend()
        fig.tight_layout()
        fig.savefig(out / "sigma_calibration.png", dpi=120)
        plt.close(fig)


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
    result = evaluate(localizer, locs, gt, args.max_lateral_nm, args.max_axial_nm, shape[1:])
    if args.out is not None:
        _plots(result, locs, gt, args.out)
    if args.json:
        print(json.dumps(_finite_or_null(result), allow_nan=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{card.name} on {args.movie.name}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in result.items():
        if not isinstance(v, list | dict):
            table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    for k, v in result["sigma_calibration"].items():
        table.add_row(f"σ {k}", f"{v:.3g}" if isinstance(v, float) else str(v))
    Console().print(table)
    crlb_table = Table(title="RMSE vs √CRLB by photons (isolated emitters)")
    for col in ("photons", "n", "rmse_x_nm", "sqrt_crlb_x_nm", "rmse_y_nm", "sqrt_crlb_y_nm"):
        crlb_table.add_column(col, justify="right")
    for r in result["rmse_vs_crlb"]:
        crlb_table.add_row(
            f"{r['photons_lo']:.0f}-{r['photons_hi']:.0f}",
            f"{r['n']:.0f}",
            f"{r['rmse_x_nm']:.1f}",
            f"{r['sqrt_crlb_x_nm']:.1f}",
            f"{r['rmse_y_nm']:.1f}",
            f"{r['sqrt_crlb_y_nm']:.1f}",
        )
    Console().print(crlb_table)
    return 0
