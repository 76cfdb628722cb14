"""PNG plots of a run: the reconstruction and the density trace."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from live_decode.config import Config
from live_decode.errors import LocalizationFileError
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.pipeline.density_trace import DensityTrace

RENDER_PX_NM = 20.0


def plot_run(out: Path, trace: DensityTrace, cfg: Config) -> None:
    """``reconstruction.png`` from the run's CSV and ``density.png`` from the density trace."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv = out / "locs.csv"
    try:
        locs = read_thunderstorm_csv(csv) if csv.is_file() else None
    except LocalizationFileError:
        locs = None
    if locs is not None and len(locs):
        h, w = cfg.microscope.fov_px
        px = cfg.camera.pixel_size_nm
        width_nm = max(w * px, float(locs["x_nm"].max()))
        height_nm = max(h * px, float(locs["y_nm"].max()))
        bins = (int(np.ceil(height_nm / RENDER_PX_NM)), int(np.ceil(width_nm / RENDER_PX_NM)))
        img, _, _ = np.histogram2d(
            locs["y_nm"],
            locs["x_nm"],
            bins=bins,
            range=[[0, bins[0] * RENDER_PX_NM], [0, bins[1] * RENDER_PX_NM]],
        )
        vmax = max(1.0, float(np.percentile(img[img > 0], 99))) if (img > 0).any() else 1.0
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(
            img,
            cmap="hot",
            vmax=vmax,
            origin="upper",
            extent=(0, bins[1] * RENDER_PX_NM / 1000, bins[0] * RENDER_PX_NM / 1000, 0),
        )
        ax.set(
            xlabel="x (µm)",
            ylabel="y (µm)",
            title=f"{len(locs)} localizations, {RENDER_PX_NM:g} nm pixels",
        )
        fig.tight_layout()
        fig.savefig(out / "reconstruction.png", dpi=120)
        plt.close(fig)
    if len(trace):
        frames, dens = trace.arrays()
        order = np.argsort(frames)
        frames, dens = frames[order], dens[order]
        k = min(25, len(dens))
        smooth = np.convolve(dens, np.ones(k) / k, mode="same")
        fig, ax = plt.subplots(figsize=(7, 3))
        per = "per frame" if trace.frames_per_point == 1 else f"per {trace.frames_per_point} frames"
        ax.plot(frames, dens, lw=0.5, alpha=0.5, label=per)
        ax.plot(frames, smooth, lw=1.5, label=f"{k}-point mean")
        ax.set(xlabel="frame", ylabel="emitters / µm² / frame", title="Density")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "density.png", dpi=120)
        plt.close(fig)
