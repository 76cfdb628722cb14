"""Localizations and super-resolution renders as napari layer data (no Qt, no napari import).

Coordinates are **nm** in every layer this plugin makes, with ``units=("nm", "nm")``: napari's
axes are (row, column) = (y, x), so a Points layer's data is ``[y_nm, x_nm]`` and an Image
layer's scale is its pixel size in nm. An image pixel (row i, col j) covers
``[i·px, (i+1)·px) × [j·px, (j+1)·px)`` nm (live_decode's convention, DESIGN.md §4) while napari
puts a pixel's *centre* at ``index · scale + translate``: hence ``translate = px / 2``, so a point
and the pixel it falls in line up on screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

LayerData = tuple[Any, dict[str, Any], str]
"""napari's ``(data, kwargs, layer_type)``."""

UNITS: Final = ("nm", "nm")
AXIS_LABELS: Final = ("y", "x")
DEFAULT_POINT_SIZE_NM: Final = 20.0
"""Diameter of a point whose σ is unknown; otherwise a point is 2σ (its larger lateral σ) wide."""
POINT_SIZE_RANGE_NM: Final = (5.0, 200.0)
FEATURE_COLUMNS: Final = (
    "frame",
    "z_nm",
    "photons",
    "bg",
    "prob",
    "sigma_x_nm",
    "sigma_y_nm",
    "sigma_z_nm",
    "sigma_photons",
)
"""Columns of ``ld.read_locs`` kept as the Points layer's features (``layer.features``)."""


def point_sizes_nm(sigma_x_nm: npt.ArrayLike, sigma_y_nm: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Point diameters (nm): 2 × the larger lateral σ, clipped to :data:`POINT_SIZE_RANGE_NM`;
    :data:`DEFAULT_POINT_SIZE_NM` where σ is unknown (NaN)."""
    sx = np.asarray(sigma_x_nm, np.float64)
    sy = np.asarray(sigma_y_nm, np.float64)
    with np.errstate(invalid="ignore"):
        sigma = np.fmax(sx, sy)  # fmax: NaN only where both are NaN
    size = np.where(np.isfinite(sigma), 2.0 * sigma, DEFAULT_POINT_SIZE_NM)
    return np.clip(size, *POINT_SIZE_RANGE_NM)


def points_layer_data(
    locs: pd.DataFrame, *, name: str, metadata: dict[str, Any] | None = None
) -> LayerData:
    """A Points layer of localizations (``ld.read_locs``'s columns: nm, frames 0-based).

    Data ``(N, 2)`` = ``[y_nm, x_nm]`` in nm; the other columns become features (z stays a
    feature: the layer is 2-D, one point per localization of every frame).
    """
    coords = np.column_stack(
        [np.asarray(locs["y_nm"], np.float64), np.asarray(locs["x_nm"], np.float64)]
    ).reshape(-1, 2)
    features = locs[[c for c in FEATURE_COLUMNS if c in locs.columns]].reset_index(drop=True)
    kwargs: dict[str, Any] = {
        "name": name,
        "features": features,
        "size": point_sizes_nm(locs["sigma_x_nm"], locs["sigma_y_nm"]),
        "face_color": "#ff40ff",
        "border_width": 0.0,
        "opacity": 0.8,
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
        "metadata": {"units": "nm", "n_localizations": len(locs), **(metadata or {})},
    }
    return coords, kwargs, "points"


def image_placement(
    pixel_size_nm: float, *, bin_factor: int = 1, y0_px: int = 0, x0_px: int = 0
) -> dict[str, Any]:
    """Image layer ``scale``/``translate`` (nm) for a render of ``pixel_size_nm`` pixels, shown
    binned ``bin_factor``× from render pixel ``(y0_px, x0_px)`` on (see the module docstring)."""
    px = float(pixel_size_nm)
    step = px * bin_factor
    return {
        "scale": (step, step),
        "translate": (y0_px * px + step / 2, x0_px * px + step / 2),
        "units": UNITS,
        "axis_labels": AXIS_LABELS,
    }
