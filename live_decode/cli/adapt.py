"""``live-decode adapt MODEL MOVIE --config SETUP``: learn the microscope from the movie itself."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", type=Path, help="model file (.pt), e.g. live_decode/bundled/demo_lite.pt"
    )
    p.add_argument("movie", type=Path, nargs="+", help="raw TIFF / OME-TIFF movie(s), in order")
    p.add_argument(
        "--config",
        type=Path,
        required=True,
        help="the setup (camera, PSF, emitters...) the movie was recorded with; its PSF and "
        "background are the starting point of the fit",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the adapted setup/model")
    p.add_argument("--rounds", type=int, default=1, help="wake–sleep rounds (default 1)")
    p.add_argument("--minutes", type=float, default=None, help="time budget of all sleep phases")
    p.add_argument("--steps", type=int, default=1000, help="training steps per sleep phase at most")
    p.add_argument("--no-sleep", action="store_true", help="wake only: fit the setup, no training")
    p.add_argument("--frames", type=int, default=200, help="movie frames read and localized")
    p.add_argument("--fit-frames", type=int, default=100, help="frames the wake phase fits")
    p.add_argument(
        "--psf",
        choices=("round", "elliptical", "astigmatic"),
        default=None,
        help="PSF shape to fit (default: the setup's: round for a round Gaussian)",
    )
    p.add_argument(
        "--min-prob", type=float, default=0.5, help="localizations rendered: p ≥ this (0.5)"
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--ignore-model-mismatch",
        action="store_true",
        help="adapt even though the model's card does not fit the setup's camera",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier adaptation in --out"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from live_decode.calibration.wake import WakeOptions
    from live_decode.config import load_config
    from live_decode.pipeline.adapt import AdaptOptions, adapt

    if args.threads:
        torch.set_num_threads(args.threads)
    setup = load_config(args.config)
    opts = AdaptOptions(
        rounds=args.rounds,
        sleep=not args.no_sleep,
        sleep_steps=args.steps,
        minutes=args.minutes,
        frames=args.frames,
        wake=WakeOptions(min_prob=args.min_prob, max_frames=args.fit_frames, psf_shape=args.psf),
        device=args.device,
        ignore_model_mismatch=args.ignore_model_mismatch,
        overwrite=args.overwrite,
    )
    result = adapt(args.model, args.movie, setup, args.out, opts, setup_name=str(args.config))
    for record, w in zip(result.rounds, result.wakes, strict=True):
        b, a = w.psf_before, w.psf_after
        line = (
            f"round {record['round']}: σx {b['sigma_x_nm']:.1f} → {a['sigma_x_nm']:.1f} nm, "
            f"σy {b['sigma_y_nm']:.1f} → {a['sigma_y_nm']:.1f} nm; log-likelihood/px "
            f"{w.loglik_before_per_px:.4f} → {w.loglik_after_per_px:.4f} "
            f"(χ²/px {w.chi2_before_per_px:.3f} → {w.chi2_after_per_px:.3f}; "
            f"{w.n_emitters} emitters in {w.n_frames} frames)"
        )
        if "sleep" in record:
            line += f"; sleep {record['sleep']['steps']} steps"
        print(line)
    for name, path in result.files.items():
        print(f"{name}: {path}")
    return 0
