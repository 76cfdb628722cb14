"""``live-decode simulate CONFIG``: a simulated acquisition written as files a person can open.

Writes to ``--out``:

- ``movie.ome.tif``: (T, H, W) uint16 OME-TIFF, streamed frame by frame, in the project's movie
  format (:mod:`live_decode.io.movie`: pixel size, frame interval, the camera metadata of
  ``SimulatedMicroscope.camera_metadata()``, and the laser power and full config).
- ``ground_truth.csv``: ThunderSTORM columns via :func:`live_decode.io.thunderstorm
  .write_ground_truth_csv`: frame 1-based, ``id`` the fluorophore (an emitter that spans frames
  keeps its id). The rows are gathered in memory (36 bytes per emitter) and written at the end.
- ``preview.png``: the first raw frame next to a 10 nm histogram of every ground-truth emitter.
- ``ground_truth_drift.csv`` (with ``microscope.drift``): the stage drift of every frame, nm
  (:mod:`live_decode.io.drift_csv`); ``ground_truth.csv`` keeps the undrifted positions.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from live_decode.config import Config, config_from_dict, load_config
from live_decode.errors import LiveDecodeError
from live_decode.io.drift_csv import write_drift_csv
from live_decode.io.movie import write_movie
from live_decode.io.thunderstorm import write_ground_truth_csv
from live_decode.model.device import resolve_device
from live_decode.simulation.microscope import GroundTruth, SimulatedMicroscope

log = logging.getLogger("live_decode.cli.simulate")

MOVIE_NAME, TRUTH_NAME, PREVIEW_NAME = "movie.ome.tif", "ground_truth.csv", "preview.png"
DRIFT_NAME = "ground_truth_drift.csv"
"""The true stage drift per frame (only when ``microscope.drift`` is set)."""
RENDER_BIN_NM = 10.0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="YAML config (camera, PSF, emitters, microscope ...)")
    p.add_argument("--frames", type=_positive_int, default=1000, help="frames to acquire")
    p.add_argument("--out", type=Path, required=True, help="output directory (created)")
    p.add_argument(
        "--laser-mw",
        type=float,
        default=None,
        help="405 nm power in mW (default: microscope.laser.power_mw)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed (default: microscope.seed)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="CPU threads for torch (default 1: a frame is small, more threads mostly wait)",
    )


def run(args: argparse.Namespace) -> int:
    cfg = _config_with_overrides(args.config, args.laser_mw, args.seed)
    out: Path = args.out
    paths = [out / MOVIE_NAME, out / TRUTH_NAME, out / PREVIEW_NAME]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not args.overwrite:
        raise LiveDecodeError(
            f"{', '.join(existing)} already exist(s); pass --overwrite or choose another --out"
        )
    device = resolve_device(args.device)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        _simulate(cfg, out, args.frames, device)
    finally:
        torch.set_num_threads(threads)  # leave a calling process (tests, notebooks) as it was
    return 0


def _simulate(cfg: Config, out: Path, n_frames: int, device: torch.device) -> None:
    """Acquire ``n_frames`` and write the three files into ``out``."""
    microscope = SimulatedMicroscope(cfg, device=device)
    log.info("simulating %d frames of %s px on %s", n_frames, microscope.fov_px, microscope.device)

    first_frame: list[npt.NDArray[np.uint16]] = []
    truth_chunks: list[GroundTruth] = []
    drift_nm: list[tuple[float, float]] = []
    with _progress() as progress:
        task = progress.add_task("simulate", total=n_frames)

        def frames() -> Iterator[npt.NDArray[np.uint16]]:
            for _ in range(n_frames):
                frame = microscope.next_frame()
                if not first_frame:
                    first_frame.append(frame.adu)
                truth_chunks.append(frame.truth)
                drift_nm.append(frame.drift_nm)
                progress.advance(task)
                yield frame.adu

        write_movie(
            out / MOVIE_NAME,
            frames(),
            n_frames,
            microscope.fov_px,
            microscope.camera_metadata(),
            cfg.microscope.frame_interval_ms,
            extra={"laser_mw": microscope.laser_power_mw, "config": cfg.model_dump(mode="json")},
        )

    truth = np.concatenate(truth_chunks)
    write_ground_truth_csv(
        out / TRUTH_NAME,
        truth["frame"],
        truth["id"],
        truth["x_nm"],
        truth["y_nm"],
        truth["z_nm"],
        truth["photons"],
    )
    if microscope.drift.enabled:
        d = np.asarray(drift_nm, dtype=np.float64).reshape(-1, 2)
        write_drift_csv(out / DRIFT_NAME, np.arange(len(d)), d[:, 0], d[:, 1])
    _write_preview(
        out / PREVIEW_NAME, first_frame[0], truth, microscope.fov_px, cfg.camera.pixel_size_nm
    )
    density = len(truth) / (n_frames * microscope.fov_area_um2)
    log.info(
        "wrote %s/{%s,%s,%s} (%d emitters, mean %.2f emitters/µm²/frame at %.3g mW)",
        out,
        MOVIE_NAME,
        TRUTH_NAME,
        PREVIEW_NAME,
        len(truth),
        density,
        microscope.laser_power_mw,
    )


# --------------------------------------------------------------------------- helpers
def _config_with_overrides(path: Path, laser_mw: float | None, seed: int | None) -> Config:
    """Load ``path`` and re-validate it with the command-line overrides (errors name both)."""
    cfg = load_config(path)
    if laser_mw is None and seed is None:
        return cfg
    data = cfg.model_dump()
    flags = []
    if laser_mw is not None:
        data["microscope"]["laser"]["power_mw"] = laser_mw
        flags.append(f"--laser-mw {laser_mw:g}")
    if seed is not None:
        data["microscope"]["seed"] = seed
        flags.append(f"--seed {seed}")
    return config_from_dict(data, source=f"{path} with {' '.join(flags)}")


def _progress() -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )


def _render_truth(
    truth: GroundTruth, fov_px: tuple[int, int], pixel_size_nm: float
) -> npt.NDArray[np.int64]:
    """Histogram of ground-truth positions, ``RENDER_BIN_NM`` bins, (rows, cols) = (y, x)."""
    h_nm, w_nm = fov_px[0] * pixel_size_nm, fov_px[1] * pixel_size_nm
    n_rows, n_cols = round(h_nm / RENDER_BIN_NM), round(w_nm / RENDER_BIN_NM)
    counts, _, _ = np.histogram2d(
        truth["y_nm"], truth["x_nm"], bins=(n_rows, n_cols), range=((0.0, h_nm), (0.0, w_nm))
    )
    as_int: npt.NDArray[np.int64] = counts.astype(np.int64)
    return as_int


def _write_preview(
    path: Path,
    frame: npt.NDArray[np.uint16],
    truth: GroundTruth,
    fov_px: tuple[int, int],
    pixel_size_nm: float,
) -> None:
    """Raw frame | ground-truth render of every emitter of the movie, side by side, in µm."""
    # Figure + Agg canvas directly: no pyplot, so no global backend state and no GUI.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = _render_truth(truth, fov_px, pixel_size_nm)
    extent = (0.0, fov_px[1] * pixel_size_nm / 1000.0, fov_px[0] * pixel_size_nm / 1000.0, 0.0)
    fig = Figure(figsize=(13.0, 6.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    raw_ax, gt_ax = fig.subplots(1, 2)
    lo, hi = np.percentile(frame, [0.5, 99.8])
    im = raw_ax.imshow(
        frame, cmap="gray", vmin=lo, vmax=max(hi, lo + 1), extent=extent, interpolation="nearest"
    )
    fig.colorbar(im, ax=raw_ax, label="ADU", shrink=0.8)
    raw_ax.set_title(f"raw frame 1 ({pixel_size_nm:g} nm px)")
    vmax = max(1.0, float(np.percentile(counts[counts > 0], 99.5))) if counts.any() else 1.0
    gt_ax.imshow(counts, cmap="magma", vmin=0, vmax=vmax, extent=extent)
    gt_ax.set_title(f"ground truth, all frames ({len(truth)} emitters, {RENDER_BIN_NM:g} nm bins)")
    for ax in (raw_ax, gt_ax):
        ax.set_xlabel("x [µm]")
        ax.set_ylabel("y [µm]")
    fig.savefig(path)
