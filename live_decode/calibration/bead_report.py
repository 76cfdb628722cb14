"""The bead-stack row of ``calibration.png``: σx(z), σy(z) with the astigmatic fit, the beads
against the spline model and their residual, and each model's residual against z."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from live_decode.calibration.bead_calibration import BeadCalibration
from live_decode.calibration.bead_psf import astigmatic_sigmas


def _montage(beads: BeadCalibration) -> tuple[npt.NDArray[np.float64], list[float]]:
    """Rows: mean bead, spline model, residual × 5; columns: the first, middle and last plane."""
    r = beads.residuals["spline"]
    n = len(beads.stack.z_nm)
    cols, zs = [], []
    for plane in (0, n // 2, n - 1):
        sel = r.plane == plane
        if not sel.any():
            continue
        bead, model = r.bead[sel].mean(0), r.model[sel].mean(0)
        scale = max(float(bead.max()), 1e-12)
        cols.append(np.concatenate([bead, model, 5.0 * (bead - model)]) / scale)
        zs.append(float(beads.stack.z_nm[plane]))
    return np.concatenate(cols, axis=1), zs


def plot_bead_row(ax: Any, beads: BeadCalibration) -> None:
    """Draw the three bead panels into ``ax`` (3 matplotlib axes)."""
    st, px = beads.stack, beads.pixel_size_nm
    a, c = beads.astigmatic, beads.astigmatic.config
    zf = np.linspace(st.z_nm[0], st.z_nm[-1], 200)
    mx, my = astigmatic_sigmas(
        zf, a.config.sigma0_nm, a.config.focal_offset_nm, a.config.depth_of_field_nm
    )
    ax[0].plot(st.z_nm, st.sigma_x_px * px, "o", ms=3, color="C0", label="σx beads")
    ax[0].plot(st.z_nm, st.sigma_y_px * px, "o", ms=3, color="C1", label="σy beads")
    ax[0].plot(zf, mx, "-", color="C0", label="astigmatic fit")
    ax[0].plot(zf, my, "-", color="C1")
    ax[0].set(
        xlabel="z (nm)",
        ylabel="PSF σ (nm)",
        title=f"{st.n_beads} beads: σ0 {c.sigma0_nm:.0f} nm, c {c.focal_offset_nm:.0f} nm, "
        f"d {c.depth_of_field_nm:.0f} nm",
    )
    ax[0].legend(fontsize=8)
    image, zs = _montage(beads)
    ax[1].imshow(image, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    ax[1].set_xticks([st.roi_px * (i + 0.5) for i in range(len(zs))], [f"{z:.0f}" for z in zs])
    ax[1].set_yticks([st.roi_px * (i + 0.5) for i in range(3)], ["beads", "spline", "residual ×5"])
    ax[1].set(xlabel="z (nm)", title="beads vs spline model (each z scaled to its peak)")
    for name, r in beads.residuals.items():
        ax[2].plot(st.z_nm, 100 * r.unexplained_per_plane, "o-", ms=3, label=f"{name}")
    floor = 100 * beads.residuals["spline"].noise_floor
    ax[2].axhline(floor, color="k", ls=":", label=f"photon noise ~{floor:.2g} %")
    ax[2].set(
        xlabel="z (nm)",
        ylabel="unexplained bead light (%)",
        title=f"residual; setup uses {beads.kind}",
    )
    ax[2].set_ylim(bottom=0)
    ax[2].legend(fontsize=8)
