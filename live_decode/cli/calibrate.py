"""``live-decode calibrate MOVIE``: a setup for a lab's own microscope from its raw movie."""

from __future__ import annotations

import argparse
from pathlib import Path

from live_decode.strict_json import dumps


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("movie", type=Path, nargs="+", help="raw TIFF / OME-TIFF movie(s), in order")
    p.add_argument("--out", type=Path, required=True, help="folder for setup.yaml and the report")
    p.add_argument(
        "--pixel-size-nm",
        type=float,
        default=None,
        help="camera pixel in the sample, nm (needed when the file does not say)",
    )
    p.add_argument(
        "--camera",
        choices=("emccd", "scmos"),
        default=None,
        help="camera type (needed when the file does not say)",
    )
    p.add_argument(
        "--dark", type=Path, default=None, help="dark series (shutter closed): baseline, read noise"
    )
    p.add_argument(
        "--qe",
        type=float,
        default=None,
        help="quantum efficiency where known (default: the file's, else 1: photons = photo-e⁻)",
    )
    p.add_argument(
        "--beads",
        type=Path,
        default=None,
        metavar="STACK.tif",
        help="bead z-stack (one frame per z plane, increasing z) for a 3-D PSF",
    )
    p.add_argument(
        "--z-step-nm",
        type=float,
        default=None,
        help="stage step between the bead stack's frames (where its OME / ImageJ / "
        "Micro-Manager metadata does not say)",
    )
    p.add_argument(
        "--psf",
        choices=("spline", "astigmatic"),
        default=None,
        help="3-D PSF the setup uses, from --beads (default: spline; both are reported)",
    )
    p.add_argument(
        "--no-refine",
        action="store_true",
        help="skip the simulation-based correction of the spot estimators (faster)",
    )


def run(args: argparse.Namespace) -> int:
    from live_decode.calibration.setup import calibrate

    result = calibrate(
        args.movie,
        args.out,
        pixel_size_nm=args.pixel_size_nm,
        camera=args.camera,
        dark=args.dark,
        qe=args.qe,
        refine=not args.no_refine,
        beads=args.beads,
        z_step_nm=args.z_step_nm,
        bead_psf=args.psf,
    )
    cam, s = result.camera, result.sample
    print(
        f"camera: {cam.kind}, baseline {cam.baseline_adu:.1f} ADU ({cam.baseline_source}), "
        f"{cam.adu_per_photon:.4g} ADU/photon"
    )
    print(f"PSF σ: {result.psf_sigma_nm[0]:.0f} × {result.psf_sigma_nm[1]:.0f} nm")
    if result.beads is not None:
        b, a = result.beads, result.beads.astigmatic.config
        lo, hi = b.z_range_nm
        print(
            f"bead PSF ({b.stack.n_beads} beads, z {lo:.0f}..{hi:.0f} nm): astigmatic σ0 "
            f"{a.sigma0_nm:.0f} nm, focal offset ±{a.focal_offset_nm:.0f} nm, depth "
            f"{a.depth_of_field_nm:.0f} nm; unexplained light: spline "
            f"{b.residuals['spline'].unexplained:.2%}, astigmatic "
            f"{b.residuals['astigmatic'].unexplained:.2%}; setup uses {b.kind}"
        )
    print(
        f"photons per frame on: {s.photons_mean:.0f} ± {s.photons_sigma:.0f}; "
        f"on-time {s.on_time_mean_frames:.2f} frames; background "
        f"{s.background_photons[0]:.1f}–{s.background_photons[1]:.1f} photons/px"
    )
    print(
        f"density: {result.density_per_um2:.2f} emitters/µm²/frame "
        f"(detected {s.detected_per_um2:.2f})"
    )
    print("simulated vs movie (KS distance, 0 = same): " + dumps(result.distances))
    for w in result.warnings:
        print(f"warning: {w}")
    for name, path in result.files.items():
        print(f"{name}: {path}")
    return 0
