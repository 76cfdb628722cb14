"""One evaluation of localizations against ground truth: what ``evaluate`` prints and returns.

:func:`evaluate_localizations` is the one entry point (the ``evaluate`` command and the Python
API both call it). Its :class:`EvaluationReport` says ``n/a`` (JSON ``null``) where a figure
does not apply — axial RMSE and efficiencies for a 2-D model — instead of a misleading 0, and
explains the photon-binned comparison with the CRLB:

**Selection at low photon counts.** The table bins the *ground-truth* emitters by photons and
gives the RMSE of those that were detected. In a bin where most emitters are missed, the
survivors are the ones whose shot noise happened to make them look bright and sharp, so their
error can be far below the √CRLB of the bin (the bound holds for an unbiased estimator applied
to every emitter, not for a detected subset). Such bins are flagged (detection fraction <
:data:`LOW_DETECTION_FRACTION`) and a note says so beside the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode.config import Config
from live_decode.errors import LiveDecodeError
from live_decode.evaluation.crlb import crlb
from live_decode.evaluation.matching import MatchResult, isolated, match_localizations
from live_decode.evaluation.metrics import (
    Metrics,
    SigmaCalibration,
    compute_metrics,
    rmse_vs_crlb,
    sigma_calibration,
)

LOW_DETECTION_FRACTION = 0.9
"""Bins where fewer than this fraction of the emitters were detected are flagged: the missed
ones are the worst-placed, so the RMSE of the rest is biased low (the demo model's lowest bin,
3-777 photons, detects 74 % and shows RMSE 18 nm beside √CRLB 38 nm)."""

N_PHOTON_BINS = 5

AXIAL_KEYS = ("rmse_ax_nm", "rmse_vol_nm", "efficiency_ax", "efficiency_vol")
"""Figures that need z: n/a for a 2-D model."""

SELECTION_NOTE = (
    "RMSE vs √CRLB bins the ground-truth emitters by photons and scores the detected ones. "
    "Where few are detected (flagged), the survivors are those whose noise happened to help, so "
    "their RMSE can sit far below the √CRLB: that is detection selection, not a network beating "
    "the bound. Compare RMSE with √CRLB only in bins with a high detection fraction."
)


@dataclass(frozen=True)
class PhotonBin:
    """One row of the RMSE-vs-√CRLB table (isolated ground-truth emitters only).

    Attributes
    ----------
    photons_lo, photons_hi
        Bin edges, photons (ground truth).
    n_emitters
        Isolated ground-truth emitters in the bin.
    n
        Of those, detected (matched).
    detected_fraction
        ``n / n_emitters`` (NaN for an empty bin).
    rmse_x_nm, rmse_y_nm, rmse_z_nm
        RMSE of the detected ones, nm (z: NaN for 2-D).
    sqrt_crlb_x_nm, sqrt_crlb_y_nm, sqrt_crlb_z_nm
        √(mean CRLB) over the detected ones, nm.
    low_detection
        ``detected_fraction < LOW_DETECTION_FRACTION``: the RMSE is that of a selected subset.
    """

    photons_lo: float
    photons_hi: float
    n_emitters: int
    n: int
    detected_fraction: float
    rmse_x_nm: float
    rmse_y_nm: float
    rmse_z_nm: float
    sqrt_crlb_x_nm: float
    sqrt_crlb_y_nm: float
    sqrt_crlb_z_nm: float
    low_detection: bool


@dataclass(frozen=True)
class EvaluationReport:
    """Metrics of one set of localizations against ground truth.

    Attributes
    ----------
    is_3d
        Whether z was evaluated (the model predicts z).
    metrics
        Jaccard, RMSE, efficiencies and counts (greedy matching).
    sigma_calibration
        How well the predicted σ tracks the measured errors.
    photon_bins
        RMSE next to √CRLB per photon bin (empty without photons or isolated emitters).
    notes
        Plain-language caveats to print beside the figures.
    """

    is_3d: bool
    metrics: Metrics
    sigma_calibration: SigmaCalibration
    photon_bins: list[PhotonBin] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def not_applicable(self) -> tuple[str, ...]:
        """Keys of :meth:`to_dict` that do not apply to this data (printed ``n/a``)."""
        return () if self.is_3d else AXIAL_KEYS

    @property
    def efficiency(self) -> float:
        """The headline efficiency: volumetric for 3-D, lateral for 2-D."""
        m = self.metrics
        return m.efficiency_vol if self.is_3d else m.efficiency_lat

    def to_dict(self) -> dict[str, object]:
        """Headline figures first, then the σ and CRLB tables; n/a and undefined are None.

        NaN (undefined, e.g. no matched pairs) is left as NaN here; write it with
        :mod:`live_decode.strict_json`, which turns it into ``null``.
        """
        m = self.metrics.to_dict()
        headline: dict[str, object] = {
            "jaccard": m["jaccard"],
            "rmse_lat_nm": m["rmse_lat_nm"],
            "rmse_ax_nm": m["rmse_ax_nm"],
            "rmse_vol_nm": m["rmse_vol_nm"],
            "efficiency": self.efficiency,
            "efficiency_lat": m["efficiency_lat"],
            "efficiency_ax": m["efficiency_ax"],
            "efficiency_vol": m["efficiency_vol"],
            "n_tp": int(m["n_tp"]),
            "n_fp": int(m["n_fp"]),
            "n_fn": int(m["n_fn"]),
        }
        for key in self.not_applicable:
            headline[key] = None
        return {
            **headline,
            "is_3d": self.is_3d,
            "not_applicable": list(self.not_applicable),
            "sigma_calibration": self.sigma_calibration.to_dict(),
            "rmse_vs_crlb": [_bin_dict(b, self.is_3d) for b in self.photon_bins],
            "notes": list(self.notes),
        }


def evaluate_localizations(
    locs: npt.NDArray[np.void],
    ground_truth: npt.NDArray[np.void],
    config: Config,
    *,
    is_3d: bool,
    max_lateral_nm: float = 250.0,
    max_axial_nm: float = 500.0,
    frame_shape_px: tuple[int, int] | None = None,
) -> EvaluationReport:
    """Score localizations against ground truth, with the CRLB of the setup in ``config``.

    Parameters
    ----------
    locs
        (N,) :data:`~live_decode.messages.LOC_DTYPE`, nm, frames 0-based.
    ground_truth
        (M,) ground truth with ``frame``, ``x_nm``, ``y_nm``, ``z_nm``, ``photons``
        (:data:`~live_decode.io.thunderstorm.GROUND_TRUTH_DTYPE`).
    config
        The setup the movie was recorded/simulated with (PSF, camera, background) — for a
        model, the config on its card.
    is_3d
        Whether the localizations carry z (a 3-D model). For 2-D, matching ignores z and the
        axial figures are n/a.
    max_lateral_nm, max_axial_nm
        Matching limits, nm.
    frame_shape_px
        (H, W) of the frames: the CRLB of emitters near the edge sees a cut PSF.
    """
    match = match_localizations(
        locs,
        ground_truth,
        max_lateral_nm=max_lateral_nm,
        max_axial_nm=max_axial_nm,
    )
    metrics = compute_metrics(locs, ground_truth, match, is_3d=is_3d)
    bins = photon_bins(locs, ground_truth, match, config, frame_shape_px)
    notes = [] if is_3d else ["2-D model: axial RMSE and efficiencies do not apply (n/a)."]
    if bins:
        notes.append(SELECTION_NOTE)
        for b in bins:
            if b.low_detection:
                below = min(b.rmse_x_nm / b.sqrt_crlb_x_nm, b.rmse_y_nm / b.sqrt_crlb_y_nm) < 1
                notes.append(
                    f"{b.photons_lo:.0f}-{b.photons_hi:.0f} photons: only "
                    f"{b.detected_fraction:.0%} of {b.n_emitters} emitters detected; their RMSE "
                    + ("(below √CRLB) " if below else "")
                    + "is that of the lucky ones (selection), not the precision at this "
                    "brightness."
                )
    return EvaluationReport(
        is_3d=is_3d,
        metrics=metrics,
        sigma_calibration=sigma_calibration(locs, ground_truth, match),
        photon_bins=bins,
        notes=notes,
    )


def photon_bins(
    locs: npt.NDArray[np.void],
    ground_truth: npt.NDArray[np.void],
    match: MatchResult,
    config: Config,
    frame_shape_px: tuple[int, int] | None = None,
    n_bins: int = N_PHOTON_BINS,
) -> list[PhotonBin]:
    """RMSE vs √CRLB in photon quantile bins of the isolated ground-truth emitters."""
    gt = ground_truth
    if not len(gt) or not np.isfinite(gt["photons"]).all():
        return []
    # The bound is for an emitter alone in its fit window: compare only with those.
    alone = isolated(gt, crlb_isolation_nm(config))
    if not alone.any():
        return []
    edges = np.unique(np.quantile(gt["photons"][alone], np.linspace(0, 1, n_bins + 1)))
    if edges.size < 2:
        return []
    sqrt_crlb = _sqrt_crlb_nm(gt, config, frame_shape_px)
    table = rmse_vs_crlb(locs, gt, match, sqrt_crlb, edges, include=alone)
    photons = np.asarray(gt["photons"], dtype=np.float64)[alone]
    index = np.clip(np.searchsorted(edges, photons, side="right") - 1, 0, edges.size - 2)
    n_emitters = np.bincount(index, minlength=edges.size - 1)
    rows = []
    for row, total in zip(table, n_emitters, strict=True):
        n = int(row["n"])
        fraction = n / int(total) if total else math.nan
        values = {k: float(row[k]) for k in (table.dtype.names or ()) if k != "n"}
        rows.append(
            PhotonBin(
                n_emitters=int(total),
                n=n,
                detected_fraction=fraction,
                low_detection=bool(total) and fraction < LOW_DETECTION_FRACTION,
                **values,
            )
        )
    return rows


def crlb_isolation_nm(config: Config) -> float:
    """Emitters closer than the CRLB's fit-window half-width overlap: not single emitters."""
    return float(config.psf.roi_px // 2) * config.camera.pixel_size_nm


def _sqrt_crlb_nm(
    gt: npt.NDArray[np.void], config: Config, frame_shape_px: tuple[int, int] | None
) -> npt.NDArray[np.float64]:
    """(M, 3) √CRLB of each ground-truth emitter in x, y, z, nm (uniform background)."""
    import torch

    from live_decode.simulation.psf import build_psf

    px = config.camera.pixel_size_nm
    psf = build_psf(config.psf, px)
    xyz = torch.tensor(
        np.stack([gt["x_nm"] / px, gt["y_nm"] / px, gt["z_nm"]], 1), dtype=torch.float32
    )
    photons = torch.tensor(gt["photons"], dtype=torch.float32).clamp(min=1.0)
    bg = torch.full_like(photons, float(np.mean(config.background.uniform_photons)))
    bound = crlb(psf, xyz, photons, bg, config.camera, frame_shape_px=frame_shape_px)
    return np.stack([bound.x_nm.numpy(), bound.y_nm.numpy(), bound.z_nm.numpy()], 1).astype(
        np.float64
    )


def _bin_dict(b: PhotonBin, is_3d: bool) -> dict[str, object]:
    d: dict[str, object] = {
        "photons_lo": b.photons_lo,
        "photons_hi": b.photons_hi,
        "n_emitters": b.n_emitters,
        "n": b.n,
        "detected_fraction": b.detected_fraction,
        "low_detection": b.low_detection,
        "rmse_x_nm": b.rmse_x_nm,
        "rmse_y_nm": b.rmse_y_nm,
        "rmse_z_nm": b.rmse_z_nm if is_3d else None,
        "sqrt_crlb_x_nm": b.sqrt_crlb_x_nm,
        "sqrt_crlb_y_nm": b.sqrt_crlb_y_nm,
        "sqrt_crlb_z_nm": b.sqrt_crlb_z_nm if is_3d else None,
    }
    return d


def check_ground_truth_fits(
    gt: npt.NDArray[np.void],
    gt_path: Path,
    movie_path: Path,
    movie_shape: tuple[int, int, int],
    pixel_size_nm: float,
) -> None:
    """Refuse ground truth that cannot belong to the movie (other frames or field of view).

    Parameters
    ----------
    gt
        Ground truth, frames 0-based, nm.
    gt_path, movie_path
        The files, named in the error.
    movie_shape
        (T, H, W) of the movie, frames and pixels.
    pixel_size_nm
        Pixel size, nm.

    Raises
    ------
    LiveDecodeError
        If a ground-truth frame or position lies outside the movie.
    """
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
