"""Writing the super-resolution render to files a person can open (no Qt)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode import strict_json
from live_decode.viewer.accumulator import RenderSettings


def export_png(
    image: npt.NDArray[np.floating],
    path: str | Path,
    levels: tuple[float, float],
    colormap: str = "inferno",
) -> Path:
    """Write ``image`` as a colour-mapped 8-bit PNG, clipped to ``levels``; returns the path.

    Row 0 is the top of the PNG, so x (the column) runs left to right as on screen.
    """
    import matplotlib.image  # lazy: only exports need matplotlib

    path = Path(path)
    lo, hi = levels
    matplotlib.image.imsave(
        path,
        np.asarray(image),
        vmin=lo,
        vmax=max(hi, lo + 1e-12),
        cmap=colormap,
        origin="upper",
        format="png",
    )
    return path


def export_tiff(
    image: npt.NDArray[np.floating], path: str | Path, settings: RenderSettings
) -> Path:
    """Write ``image`` as a 16-bit TIFF with ImageJ pixel size (µm); returns the path.

    Histogram counts up to 65535 are written as they are (``counts_per_unit`` = 1); otherwise the
    image is scaled so its maximum is 65535, and ``counts_per_unit`` (JSON in the ImageJ ``Info``)
    says by how much (localizations per grey level).
    """
    import tifffile

    path = Path(path)
    data = np.asarray(image, np.float64)
    peak = float(data.max()) if data.size else 0.0
    exact = not settings.gaussian and peak <= 65535
    scale = 1.0 if exact or peak <= 0 else 65535.0 / peak
    out = np.clip(np.rint(data * scale), 0, 65535).astype(np.uint16)
    px_per_um = 1000.0 / settings.pixel_size_nm
    info = {
        "pixel_size_nm": settings.pixel_size_nm,
        "rendering": "gaussian" if settings.gaussian else "histogram",
        "min_prob": settings.min_prob,
        "max_sigma_nm": settings.max_sigma_nm if math.isfinite(settings.max_sigma_nm) else None,
        "counts_per_unit": 1.0 / scale,
    }
    tifffile.imwrite(
        path,
        out,
        imagej=True,
        resolution=(px_per_um, px_per_um),
        metadata={"unit": "um", "Info": strict_json.dumps({"live_decode": info})},
    )
    return path
