"""Drawing localizations into images (no Qt): histogram counts, pixel-integrated Gaussians,
block sums for display, and display levels.

Coordinates are in render pixels, pixel j covering [j, j+1) (DESIGN.md §4); x is the column.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

Image = npt.NDArray[np.float32]

KERNEL_SIGMAS: Final = 2.5
"""Gaussian kernels reach ±2.5 σ (98.8 % of the mass per axis; the rest is renormalized)."""


def splat_counts(
    canvas: Image,
    x_px: npt.NDArray[np.float32],
    y_px: npt.NDArray[np.float32],
    weights: npt.NDArray[np.float32] | None = None,
) -> None:
    """Add 1 (or ``weights``) per localization at pixel (floor(y), floor(x)); coordinates must be
    inside."""
    if x_px.size == 0:
        return
    flat = y_px.astype(np.int64) * canvas.shape[1] + x_px.astype(np.int64)
    # unique + counts beats np.add.at and a full-canvas bincount (research/pymmcore.md §5).
    if weights is None:
        index, counts = np.unique(flat, return_counts=True)
        canvas.reshape(-1)[index] += counts.astype(np.float32)
        return
    index, inverse = np.unique(flat, return_inverse=True)
    canvas.reshape(-1)[index] += np.bincount(inverse, weights=weights).astype(np.float32)


def splat_gaussians(
    canvas: Image,
    pad: int,
    x_px: npt.NDArray[np.float32],
    y_px: npt.NDArray[np.float32],
    sigma_x_px: npt.NDArray[np.float32],
    sigma_y_px: npt.NDArray[np.float32],
    max_radius: int,
    coarse: Image | None = None,
    factor: int = 1,
    weights: npt.NDArray[np.float32] | None = None,
) -> None:
    """Add one pixel-integrated, normalized Gaussian per localization (times ``weights``).

    ``canvas`` has ``pad ≥ max_radius`` pixels of margin on each side, so no kernel needs
    clipping; coordinates are in render pixels of the interior (pixel j covers [j, j+1)).
    Localizations are grouped by kernel radius, and each group is one vectorized scatter-add.
    With ``coarse`` (the interior summed in ``factor × factor`` blocks), the same Gaussians are
    added to it exactly: the kernel is separable, so each axis's weights are summed into blocks
    first, and only (K/factor + 1)² products per localization are scattered.
    """
    if x_px.size == 0:
        return
    sx = np.maximum(np.nan_to_num(sigma_x_px, nan=0.0), np.float32(1e-3))
    sy = np.maximum(np.nan_to_num(sigma_y_px, nan=0.0), np.float32(1e-3))
    radius = np.clip(np.ceil(KERNEL_SIGMAS * np.maximum(sx, sy)), 1, max_radius).astype(np.int64)
    stride = canvas.shape[1]
    height, width = canvas.shape[0] - 2 * pad, canvas.shape[1] - 2 * pad
    flat_canvas = canvas.reshape(-1)
    for r in np.unique(radius):
        sel = radius == r
        wx, j0 = _axis_weights(x_px[sel], sx[sel], int(r))
        wy, i0 = _axis_weights(y_px[sel], sy[sel], int(r))
        if weights is not None:
            wy = wy * weights[sel][:, None]  # the kernel is wy ⊗ wx: weighting one axis suffices
        offsets = np.arange(-r, r + 1)
        kernel_index = offsets[:, None] * stride + offsets[None, :]  # (K, K)
        base = (i0 + pad) * stride + (j0 + pad)
        index = base[:, None, None] + kernel_index[None]
        kernels = wy[:, :, None] * wx[:, None, :]
        np.add.at(flat_canvas, index.reshape(-1), kernels.reshape(-1))
        if coarse is not None:
            wxc, c0 = _block_weights(wx, j0 - r, width, factor)
            wyc, r0 = _block_weights(wy, i0 - r, height, factor)
            kc = wxc.shape[1]
            rows = np.clip(r0[:, None] + np.arange(kc), 0, coarse.shape[0] - 1)
            cols = np.clip(c0[:, None] + np.arange(kc), 0, coarse.shape[1] - 1)
            # Clipped indices only ever carry zero weight (masked outside the interior).
            index_c = rows[:, :, None] * coarse.shape[1] + cols[:, None, :]
            np.add.at(
                coarse.reshape(-1),
                index_c.reshape(-1),
                (wyc[:, :, None] * wxc[:, None, :]).reshape(-1),
            )


def _block_weights(
    weights: npt.NDArray[np.float32], first: npt.NDArray[np.int64], size: int, factor: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Sum (n, K) per-pixel weights starting at pixel ``first`` into blocks of ``factor`` pixels.

    Pixels outside [0, size) get no weight. Returns (n, Kc) block weights and the (n,) first
    block index (floor division, so it may be negative).
    """
    n, k = weights.shape
    pixels = first[:, None] + np.arange(k)
    masked = np.where((pixels >= 0) & (pixels < size), weights, np.float32(0))
    block0 = first // factor
    local = pixels // factor - block0[:, None]  # 0 .. Kc-1
    kc = (k - 1) // factor + 2
    flat = (np.arange(n)[:, None] * kc + local).reshape(-1)
    summed = np.bincount(flat, masked.reshape(-1), minlength=n * kc).astype(np.float32)
    return summed.reshape(n, kc), block0


def _axis_weights(
    centre_px: npt.NDArray[np.float32], sigma_px: npt.NDArray[np.float32], r: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Per-pixel integrals of N(centre, σ) over pixels floor(centre)-r .. floor(centre)+r.

    Returns (n, 2r+1) weights, each row summing to 1, and the (n,) pixel floor(centre).
    """
    first = np.floor(centre_px).astype(np.int64)
    edges = (first - r)[:, None] + np.arange(2 * r + 2)[None, :]  # (n, K+1) pixel edges
    cdf = ndtr((edges - centre_px[:, None]) / sigma_px[:, None]).astype(np.float32)
    weights = np.diff(cdf, axis=1)
    total = weights.sum(axis=1, keepdims=True)
    weights /= np.where(total > 0, total, np.float32(1))
    return weights, first


def bin_sum(image: npt.NDArray[np.float32], f: int) -> Image:
    """Sum ``f × f`` blocks of ``image``; a ragged last row/column of blocks sums what there is."""
    rows, cols = image.shape
    full_r, full_c = rows // f, cols // f
    nr, nc = -(-rows // f), -(-cols // f)
    by_rows = np.empty((nr, cols), np.float32)
    # Splitting an axis is a view even of a strided crop, and summing it is fast.
    by_rows[:full_r] = image[: full_r * f].reshape(full_r, f, cols).sum(axis=1)
    if full_r < nr:
        by_rows[full_r] = image[full_r * f :].sum(axis=0)
    out = np.empty((nr, nc), np.float32)
    out[:, :full_c] = by_rows[:, : full_c * f].reshape(nr, full_c, f).sum(axis=2)
    if full_c < nc:
        out[:, full_c] = by_rows[:, full_c * f :].sum(axis=1)
    return out


def percentile_levels(
    image: npt.NDArray[np.floating], percentile: float = 99.5
) -> tuple[float, float]:
    """Display levels (0, p-th percentile of the non-zero pixels); (0, 1) for an empty image.

    Sparse super-resolution images are mostly zero, so the percentile over all pixels would be 0.
    At most ~250k pixels are sampled (a regular stride), which keeps this cheap at 5–10 Hz.
    """
    values = image[image > 0]
    if values.size == 0:
        return 0.0, 1.0
    if values.size > 250_000:
        values = values[:: values.size // 250_000]
    high = float(np.percentile(values, percentile))
    return 0.0, high if high > 0 else 1.0


def colour_by_value(
    image: Image,
    values: Image,
    value_range: tuple[float, float] | None,
    white: float,
    lut: npt.NDArray[np.uint8],
) -> npt.NDArray[np.uint8]:
    """An RGB picture: hue from ``values`` through ``lut``, brightness from ``image``.

    Parameters
    ----------
    image
        (rows, cols) localization counts (or Gaussian mass).
    values
        (rows, cols) mean z (nm) or frame per pixel; NaN where empty.
    value_range
        (low, high) mapped onto the ends of ``lut``; None: the range of ``values``.
    white
        Count shown at full brightness (the display level).
    lut
        (256, 3) uint8 colour table.

    Returns
    -------
    (rows, cols, 3) uint8.
    """
    finite = np.isfinite(values)
    if value_range is None:
        value_range = (
            (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0, 1)
        )
    low, high = value_range
    span = high - low if high > low else 1.0
    position = np.clip((np.where(finite, values, low) - low) / span, 0.0, 1.0)
    rgb = lut[np.rint(position * (len(lut) - 1)).astype(np.intp)].astype(np.float32)
    brightness = np.clip(image / np.float32(white if white > 0 else 1.0), 0.0, 1.0)
    out: npt.NDArray[np.uint8] = (rgb * brightness[..., None]).astype(np.uint8)
    return out
