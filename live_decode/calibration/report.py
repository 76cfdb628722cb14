"""``calibration.png``: the photon-transfer curve, the PSF and photon fits, real vs simulated."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from live_decode.calibration.camera_fit import transfer_pairs

if TYPE_CHECKING:
    from live_decode.calibration.setup import CalibrationResult


def plot_calibration(
    path: Path,
    movie: npt.NDArray[np.generic],
    spots: npt.NDArray[np.void],
    sim_frames: npt.NDArray[np.float32],
    sim_spots: npt.NDArray[np.void],
    result: CalibrationResult,
) -> Path:
    """Six panels: PTC with its fit, PSF σ, photons and pixel values (real vs simulated),
    a real and a simulated frame side by side; with a bead stack, a third row (σx(z), σy(z),
    beads vs spline model, residuals against z)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cam = result.camera
    rows = 2 if result.beads is None else 3
    fig, ax = plt.subplots(rows, 3, figsize=(13, 3.75 * rows))
    m, v = transfer_pairs(movie)
    sel = np.random.default_rng(0).choice(len(m), size=min(len(m), 20000), replace=False)
    a = ax[0, 0]
    a.plot(m[sel], v[sel], ",", alpha=0.3, color="0.5")
    xs = np.linspace(min(cam.baseline_adu, float(m.min())), float(np.quantile(m, 0.999)), 50)
    a.plot(xs, cam.slope_adu * xs + cam.intercept_adu2, "r-", label="photon-transfer fit")
    a.axvline(cam.baseline_adu, color="k", ls=":", label=f"baseline {cam.baseline_adu:.1f} ADU")
    a.set(xlabel="signal (ADU)", ylabel="noise variance (ADU²)", yscale="linear")
    a.set_ylim(0, float(np.quantile(v[sel], 0.99)))
    a.set_title(f"{cam.kind}: {cam.adu_per_photon:.3g} ADU/photon")
    a.legend(fontsize=8)

    real, sim = spots[spots["ok"]], sim_spots[sim_spots["ok"]]
    px = result.config.camera.pixel_size_nm

    def hist(
        a: Any, r: npt.NDArray[np.float64], s: npt.NDArray[np.float64], label: str, key: str
    ) -> None:
        hi = float(np.nanquantile(np.concatenate([r, s]), 0.99)) if len(r) + len(s) else 1.0
        lo = float(np.nanquantile(np.concatenate([r, s]), 0.01)) if len(r) + len(s) else 0.0
        bins = np.linspace(lo, hi, 50)
        a.hist(r, bins=bins, density=True, alpha=0.5, label="movie")
        a.hist(s, bins=bins, density=True, alpha=0.5, label="simulated setup")
        d = result.distances.get(key, float("nan"))
        a.set(xlabel=label, title=f"KS distance {d:.2f}")
        a.legend(fontsize=8)

    hist(
        ax[0, 1],
        0.5 * (real["sigma_x_px"] + real["sigma_y_px"]) * px,
        0.5 * (sim["sigma_x_px"] + sim["sigma_y_px"]) * px,
        "PSF σ (nm)",
        "psf_sigma_px",
    )
    hist(ax[0, 2], real["photons"], sim["photons"], "spot photons", "spot_photons")
    h, w = sim_frames.shape[1:]
    real_px = np.asarray(movie[: min(len(movie), 200), :h, :w], dtype=np.float64).ravel()
    hist(
        ax[1, 0],
        real_px,
        sim_frames.ravel().astype(np.float64),
        "pixel value (ADU)",
        "pixel_values_adu",
    )
    frame = np.asarray(movie[len(movie) // 2, :h, :w], dtype=np.float64)
    vmin, vmax = np.quantile(frame, [0.01, 0.995])
    ax[1, 1].imshow(frame, cmap="gray", vmin=vmin, vmax=vmax)
    ax[1, 1].set_title("movie")
    ax[1, 2].imshow(sim_frames[0], cmap="gray", vmin=vmin, vmax=vmax)
    ax[1, 2].set_title(f"simulated, {result.density_per_um2:.2f} emitters/µm²")
    for a in ax[1, 1:]:
        a.set_xticks([])
        a.set_yticks([])
    if result.beads is not None:
        from live_decode.calibration.bead_report import plot_bead_row

        plot_bead_row(ax[2], result.beads)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
