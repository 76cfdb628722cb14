"""Detection and localization metrics of the SMLM 2016 challenge, as DECODE reports them.

- Jaccard index JI = TP / (TP + FP + FN).
- RMSE lateral √(Σ(dx² + dy²)/N), axial √(Σdz²/N), volumetric √(Σ(dx² + dy² + dz²)/N), nm.
- Efficiency E = (100 − √((100·(1 − JI))² + α²·RMSE²)) / 100, with α = 1 %/nm lateral and
  0.5 %/nm axial; volumetric efficiency = mean of the two (Sage et al., Nat Methods 2019).

Undefined values (no pairs, empty sets) are NaN, never an exception, as in DECODE.
Also here: RMSE against a given √CRLB, binned by photons, and the calibration of the predicted σ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from live_decode.evaluation.matching import (
    FloatArray,
    MatchResult,
    match_localizations,
    matched_errors_nm,
)

ALPHA_LATERAL_PER_NM = 1.0
ALPHA_AXIAL_PER_NM = 0.5

CRLB_TABLE_DTYPE = np.dtype(
    [
        ("photons_lo", "<f8"),
        ("photons_hi", "<f8"),
        ("n", "<i8"),
        ("rmse_x_nm", "<f8"),
        ("rmse_y_nm", "<f8"),
        ("rmse_z_nm", "<f8"),
        ("sqrt_crlb_x_nm", "<f8"),
        ("sqrt_crlb_y_nm", "<f8"),
        ("sqrt_crlb_z_nm", "<f8"),
    ]
)
"""One row per photon bin: the RMSE of the matched errors and the root-mean-square √CRLB."""


@dataclass(frozen=True)
class Metrics:
    """Detection and localization quality of predictions against ground truth.

    Attributes
    ----------
    jaccard
        TP / (TP + FP + FN), in [0, 1]; NaN when all counts are 0.
    rmse_lat_nm, rmse_ax_nm, rmse_vol_nm
        RMSE over matched pairs, nm; NaN without pairs.
    efficiency_lat, efficiency_ax, efficiency_vol
        SMLM-challenge efficiency as a fraction (1 = perfect; can be negative).
    n_tp, n_fp, n_fn
        Matched pairs, unmatched predictions, unmatched ground-truth emitters.
    """

    jaccard: float
    rmse_lat_nm: float
    rmse_ax_nm: float
    rmse_vol_nm: float
    efficiency_lat: float
    efficiency_ax: float
    efficiency_vol: float
    n_tp: int
    n_fp: int
    n_fn: int

    def to_dict(self) -> dict[str, float | int]:
        """The metrics as a plain dict (JSON-ready except for NaN)."""
        return asdict(self)


@dataclass(frozen=True)
class SigmaCalibration:
    """How well the predicted σ tracks the measured error on matched emitters.

    Attributes
    ----------
    pearson_x, pearson_y
        Pearson correlation between predicted σ (``sigma_x_nm`` / ``sigma_y_nm``) and |error|
        along that axis. NaN with fewer than 2 pairs or a constant σ or error.
    pearson_ideal_x, pearson_ideal_y
        The Pearson r the same predicted σ would reach if perfectly calibrated, i.e. if each error
        were drawn from N(0, σ²): √(2/π)·sd(σ) / √(E[σ²] − (2/π)·E[σ]²). |error| of a single
        emitter is a noisy read-out of its σ, so this ceiling is < 0.8 and grows with the spread
        of σ; compare ``pearson_*`` with it rather than with 1.
    binned_pearson_x, binned_pearson_y
        Pearson r between the mean predicted σ and the RMSE of the emitters in each decile of σ
        (the calibration curve, as in DECODE's figures); near 1 when σ ranks the errors well.
    rmse_to_rms_sigma_x, rmse_to_rms_sigma_y
        RMSE along the axis / √mean(σ²). 1 for a calibrated σ (E[error²] = E[σ²]); > 1:
        overconfident. (Dividing by the mean σ instead would read > 1 for a calibrated σ that
        varies from emitter to emitter.)
    n
        Matched pairs with a finite predicted σ used.
    """

    pearson_x: float
    pearson_y: float
    pearson_ideal_x: float
    pearson_ideal_y: float
    binned_pearson_x: float
    binned_pearson_y: float
    rmse_to_rms_sigma_x: float
    rmse_to_rms_sigma_y: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        """The values as a plain dict."""
        return asdict(self)


def jaccard_index(n_tp: int, n_fp: int, n_fn: int) -> float:
    """TP / (TP + FP + FN); NaN when the denominator is 0."""
    total = n_tp + n_fp + n_fn
    return n_tp / total if total > 0 else math.nan


def rmse_nm(pred_xyz_nm: npt.ArrayLike, gt_xyz_nm: npt.ArrayLike) -> tuple[float, float, float]:
    """Lateral, axial and volumetric RMSE of matched positions.

    Parameters
    ----------
    pred_xyz_nm, gt_xyz_nm
        (N, 3) or (N, 2) matched positions, nm. With two columns the axial RMSE is NaN.

    Returns
    -------
    tuple of float
        (rmse_lat, rmse_ax, rmse_vol), nm; all NaN when N = 0.

    Raises
    ------
    ValueError
        If the shapes differ or the width is not 2 or 3.
    """
    pred = np.asarray(pred_xyz_nm, dtype=np.float64)
    gt = np.asarray(gt_xyz_nm, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim != 2 or pred.shape[1] not in (2, 3):
        raise ValueError(
            f"rmse_nm needs two (N, 2) or (N, 3) arrays of the same shape, got {pred.shape} "
            f"and {gt.shape}."
        )
    if pred.shape[0] == 0:
        return math.nan, math.nan, math.nan
    sq = (pred - gt) ** 2
    lat = float(np.sqrt(sq[:, :2].sum(axis=1).mean()))
    if pred.shape[1] == 2:
        return lat, math.nan, lat
    return lat, float(np.sqrt(sq[:, 2].mean())), float(np.sqrt(sq.sum(axis=1).mean()))


def efficiency(jaccard: float, rmse_nm: float, alpha_per_nm: float) -> float:
    """SMLM 2016 challenge efficiency (100 − √((100·(1 − JI))² + α²·RMSE²)) / 100.

    Parameters
    ----------
    jaccard
        Jaccard index as a fraction in [0, 1].
    rmse_nm
        RMSE, nm.
    alpha_per_nm
        Weight of the RMSE, %/nm: 1 lateral, 0.5 axial.

    Returns
    -------
    float
        Efficiency as a fraction (1 = perfect); NaN if an input is NaN.
    """
    return (100.0 - math.hypot(100.0 * (1.0 - jaccard), alpha_per_nm * rmse_nm)) / 100.0


def compute_metrics(
    pred: npt.NDArray[np.void],
    gt: npt.NDArray[np.void],
    match: MatchResult | None = None,
    *,
    max_lateral_nm: float = 250.0,
    max_axial_nm: float | None = 500.0,
    alpha_lateral_per_nm: float = ALPHA_LATERAL_PER_NM,
    alpha_axial_per_nm: float = ALPHA_AXIAL_PER_NM,
    is_3d: bool = True,
) -> Metrics:
    """Match (unless ``match`` is given) and compute JI, RMSE and efficiency.

    Parameters
    ----------
    pred
        (N,) predictions with ``frame``, ``x_nm``, ``y_nm``, ``z_nm`` (LOC_DTYPE).
    gt
        (M,) ground truth with the same fields.
    match
        A result of :func:`match_localizations` for these tables; computed when None.
    max_lateral_nm, max_axial_nm
        Matching limits, nm (used only when ``match`` is None).
    alpha_lateral_per_nm, alpha_axial_per_nm
        Efficiency weights, %/nm.
    is_3d
        False for 2-D data: z is not compared, and the axial and volumetric RMSE and
        efficiencies are NaN (they do not apply; a z of 0 against 0 would read as a perfect 0).
    """
    if match is None:
        match = match_localizations(
            pred, gt, max_lateral_nm=max_lateral_nm, max_axial_nm=max_axial_nm
        )
    errors = matched_errors_nm(pred, gt, match)
    if not is_3d:
        errors = errors[:, :2]
    lat, ax, vol = rmse_nm(errors, np.zeros_like(errors))
    if not is_3d:
        vol = math.nan
    ji = jaccard_index(match.n_tp, match.n_fp, match.n_fn)
    eff_lat = efficiency(ji, lat, alpha_lateral_per_nm)
    eff_ax = efficiency(ji, ax, alpha_axial_per_nm)
    return Metrics(
        jaccard=ji,
        rmse_lat_nm=lat,
        rmse_ax_nm=ax,
        rmse_vol_nm=vol,
        efficiency_lat=eff_lat,
        efficiency_ax=eff_ax,
        efficiency_vol=(eff_lat + eff_ax) / 2.0,
        n_tp=match.n_tp,
        n_fp=match.n_fp,
        n_fn=match.n_fn,
    )


def rmse_vs_crlb(
    pred: npt.NDArray[np.void],
    gt: npt.NDArray[np.void],
    match: MatchResult,
    sqrt_crlb_nm: npt.ArrayLike,
    photon_bin_edges: npt.ArrayLike,
    include: npt.ArrayLike | None = None,
) -> npt.NDArray[np.void]:
    """RMSE of matched emitters next to the √CRLB, binned by ground-truth photons.

    Parameters
    ----------
    pred, gt
        The tables that ``match`` was computed from; ``gt`` needs a ``photons`` field.
    match
        Matched pairs.
    sqrt_crlb_nm
        (M, 3) or (M, 2) √CRLB per ground-truth emitter for x, y (, z), nm.
    photon_bin_edges
        (B + 1,) increasing bin edges, photons; bin b is [edge_b, edge_b+1) and the last bin
        includes its upper edge. Pairs outside the edges are left out.
    include
        (M,) bool over the ground-truth rows; pairs whose ground truth is False are left out (e.g.
        keep only :func:`~live_decode.evaluation.matching.isolated` emitters, which the
        single-emitter bound describes). None: all pairs.

    Returns
    -------
    numpy.ndarray
        (B,) :data:`CRLB_TABLE_DTYPE`. The CRLB column is √(mean CRLB) over the bin, the number
        to compare with the RMSE. Empty bins, and z without a z column, are NaN.
    """
    crlb = np.asarray(sqrt_crlb_nm, dtype=np.float64)
    if crlb.ndim != 2 or crlb.shape[0] != len(gt) or crlb.shape[1] not in (2, 3):
        raise ValueError(
            f"sqrt_crlb_nm must be (M, 2) or (M, 3) with M = {len(gt)} ground-truth rows, "
            f"got {crlb.shape}."
        )
    if crlb.shape[1] == 2:
        crlb = np.column_stack([crlb, np.full(len(crlb), np.nan)])
    edges = np.asarray(photon_bin_edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError(f"photon_bin_edges must be >= 2 increasing values, got {edges}.")
    errors = matched_errors_nm(pred, gt, match)
    photons = np.asarray(gt["photons"], dtype=np.float64)[match.gt_index]
    crlb = crlb[match.gt_index]
    bins = np.searchsorted(edges, photons, side="right") - 1
    bins[photons == edges[-1]] = edges.size - 2
    if include is not None:
        mask = np.asarray(include, dtype=bool)
        if mask.shape != (len(gt),):
            raise ValueError(f"include must be ({len(gt)},) bool, got shape {mask.shape}.")
        bins[~mask[match.gt_index]] = -1
    table = np.zeros(edges.size - 1, dtype=CRLB_TABLE_DTYPE)
    table["photons_lo"], table["photons_hi"] = edges[:-1], edges[1:]
    for b in range(edges.size - 1):  # a handful of bins
        rows = bins == b
        n = int(rows.sum())
        table["n"][b] = n
        for axis, name in enumerate("xyz"):
            table[f"rmse_{name}_nm"][b] = _rms(errors[rows, axis]) if n else np.nan
            table[f"sqrt_crlb_{name}_nm"][b] = _rms(crlb[rows, axis]) if n else np.nan
    return table


def sigma_calibration(
    pred: npt.NDArray[np.void], gt: npt.NDArray[np.void], match: MatchResult
) -> SigmaCalibration:
    """Correlate predicted σ with the measured |error| of matched emitters, per lateral axis.

    Parameters
    ----------
    pred
        Predictions with ``sigma_x_nm`` and ``sigma_y_nm`` (LOC_DTYPE), nm.
    gt
        Ground truth.
    match
        Matched pairs of ``pred`` and ``gt``.
    """
    errors = matched_errors_nm(pred, gt, match)
    sigma = np.column_stack(
        [
            np.asarray(pred[f], dtype=np.float64)[match.pred_index]
            for f in ("sigma_x_nm", "sigma_y_nm")
        ]
    ).reshape(-1, 2)
    ok = np.isfinite(sigma).all(axis=1) & np.isfinite(errors[:, :2]).all(axis=1)
    sigma, errors = sigma[ok], errors[ok]
    ratios = [_rms(errors[:, a]) / _rms(sigma[:, a]) if ok.any() else math.nan for a in (0, 1)]
    binned = [calibration_curve(sigma[:, a], errors[:, a]) for a in (0, 1)]
    return SigmaCalibration(
        pearson_x=_pearson(sigma[:, 0], np.abs(errors[:, 0])),
        pearson_y=_pearson(sigma[:, 1], np.abs(errors[:, 1])),
        pearson_ideal_x=_pearson_ceiling(sigma[:, 0]),
        pearson_ideal_y=_pearson_ceiling(sigma[:, 1]),
        binned_pearson_x=_pearson(*binned[0]),
        binned_pearson_y=_pearson(*binned[1]),
        rmse_to_rms_sigma_x=ratios[0],
        rmse_to_rms_sigma_y=ratios[1],
        n=int(ok.sum()),
    )


def calibration_curve(
    sigma: FloatArray, errors: FloatArray, n_bins: int = 10
) -> tuple[FloatArray, FloatArray]:
    """Mean predicted σ and RMSE of the signed errors per quantile bin of σ (empty bins dropped).

    A calibrated σ puts the points on the diagonal.
    """
    if sigma.size == 0:
        return np.zeros(0), np.zeros(0)
    edges = np.quantile(sigma, np.linspace(0, 1, n_bins + 1))
    index = np.clip(np.searchsorted(edges, sigma, side="right") - 1, 0, n_bins - 1)
    keep = [b for b in range(n_bins) if np.any(index == b)]
    mean_sigma = np.array([sigma[index == b].mean() for b in keep])
    rmse = np.array([_rms(errors[index == b]) for b in keep])
    return mean_sigma, rmse


def _pearson_ceiling(sigma: FloatArray) -> float:
    """corr(σ, |σ·z|) for z ~ N(0, 1) independent of σ: the best a calibrated σ can do."""
    if sigma.size < 2:
        return math.nan
    mean_abs_z = math.sqrt(2 / math.pi)
    var = float(sigma.var())
    denominator = float(np.mean(sigma**2)) - mean_abs_z**2 * float(sigma.mean()) ** 2
    return mean_abs_z * math.sqrt(var / denominator) if var > 0 and denominator > 0 else math.nan


def _rms(values: FloatArray) -> float:
    return float(np.sqrt(np.mean(values**2))) if values.size else math.nan


def _pearson(a: FloatArray, b: FloatArray) -> float:
    """Pearson r; NaN (no warning) for fewer than 2 values or a constant input."""
    if a.size < 2:
        return math.nan
    da, db = a - a.mean(), b - b.mean()
    denominator = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return float(np.dot(da, db)) / denominator if denominator > 0 else math.nan
