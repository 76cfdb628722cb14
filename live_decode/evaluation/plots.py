"""PNG plots of an evaluation: RMSE against √CRLB by photons, and σ calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode.evaluation.matching import match_localizations, matched_errors_nm
from live_decode.evaluation.metrics import calibration_curve
from live_decode.evaluation.report import LOW_DETECTION_FRACTION, EvaluationReport


def plot_evaluation(
    report: EvaluationReport,
    locs: npt.NDArray[np.void],
    gt: npt.NDArray[np.void],
    out: Path,
) -> list[Path]:
    """Write ``rmse_vs_crlb.png`` and ``sigma_calibration.png`` into ``out``; return the paths.

    Bins with a low detection fraction are drawn hollow: their RMSE is that of a selected
    subset (see :mod:`live_decode.evaluation.report`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    rows = report.photon_bins
    if rows:
        fig, ax = plt.subplots(figsize=(5, 4))
        mid = np.array([(r.photons_lo + r.photons_hi) / 2 for r in rows])
        low = np.array([r.low_detection for r in rows])
        for name, marker in (("x", "o"), ("y", "s")):
            rmse = np.array([getattr(r, f"rmse_{name}_nm") for r in rows])
            (line,) = ax.plot(mid, rmse, f"{marker}-", label=f"RMSE {name}")
            if low.any():
                ax.plot(mid[low], rmse[low], marker, mfc="white", color=line.get_color())
        ax.plot(mid, [r.sqrt_crlb_x_nm for r in rows], "k--", label="√CRLB x")
        title = "Localization error vs CRLB"
        if low.any():
            title += f"\n(hollow: < {LOW_DETECTION_FRACTION:.0%} detected: selection)"
        ax.set(xlabel="photons", ylabel="nm", title=title)
        ax.legend()
        fig.tight_layout()
        path = out / "rmse_vs_crlb.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
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
        path = out / "sigma_calibration.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
