"""Super-resolution images scored against the ground truth: renders and NMSE.

Deep-STORM's paper scores its reconstructions by the normalised mean squared error against the
ground-truth image. The two images come in different units (a network's density, a histogram of
localizations, counts of true emitters), so the estimate is first scaled by the factor that fits
it best in the least-squares sense: NMSE = min_a ‖a·x̂ − x‖² / ‖x‖², between 0 (identical up to
scale) and 1 (no overlap). Both images are blurred with the same small Gaussian first (the
paper's comparison, which forgives sub-pixel shifts within that blur).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

FloatArray = npt.NDArray[np.float64]


def nmse(estimate: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """min_a ‖a·estimate − reference‖² / ‖reference‖² (arrays of one shape; NaN if reference is 0).

    The optimal a is ⟨estimate, reference⟩ / ‖estimate‖² (0 for an all-zero estimate: NMSE 1).
    """
    est = np.asarray(estimate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if est.shape != ref.shape:
        raise ValueError(f"images of different shapes: {est.shape} and {ref.shape}")
    ref_sq = float(np.sum(ref * ref))
    if ref_sq == 0.0:
        return float("nan")
    est_sq = float(np.sum(est * est))
    a = float(np.sum(est * ref)) / est_sq if est_sq > 0 else 0.0
    return float(np.sum((a * est - ref) ** 2)) / ref_sq


def render_points(
    x_nm: npt.ArrayLike,
    y_nm: npt.ArrayLike,
    shape_px: tuple[int, int],
    pixel_nm: float,
    weights: npt.ArrayLike | None = None,
) -> FloatArray:
    """Histogram (H, W) of points on a grid of ``pixel_nm`` pixels (x the column; pixel j covers
    [j, j+1) × pixel_nm). Points outside the grid are dropped."""
    h, w = shape_px
    col = np.floor(np.asarray(x_nm, dtype=np.float64) / pixel_nm).astype(np.int64)
    row = np.floor(np.asarray(y_nm, dtype=np.float64) / pixel_nm).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    wts = None if weights is None else np.asarray(weights, dtype=np.float64)[inside]
    image = np.zeros(h * w, dtype=np.float64)
    np.add.at(image, row[inside] * w + col[inside], 1.0 if wts is None else wts)
    return image.reshape(h, w)


def blurred(image: npt.ArrayLike, sigma_px: float) -> FloatArray:
    """``image`` convolved with a Gaussian of σ = ``sigma_px`` (zero outside the image)."""
    out: FloatArray = gaussian_filter(
        np.asarray(image, dtype=np.float64), sigma_px, mode="constant"
    )
    return out


def image_nmse(
    estimate: npt.ArrayLike, reference: npt.ArrayLike, blur_sigma_px: float = 1.0
) -> float:
    """:func:`nmse` of the two images after both are blurred with σ = ``blur_sigma_px``."""
    return nmse(blurred(estimate, blur_sigma_px), blurred(reference, blur_sigma_px))
