"""The super-resolution image a network yields directly (Deep-STORM): a float32 TIFF.

``sr_image.tif`` in the run directory holds the sum of the network's density tiles over every
processed frame, (H·u, W·u) pixels of ``pixel_size_nm / u``, with the pixel size in the ImageJ
resolution tags (so Fiji shows nm) and in the description.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import tifffile

from live_decode.errors import MovieError

SR_IMAGE_NAME = "sr_image.tif"


def write_sr_image(
    path: Path, image: npt.ArrayLike, pixel_nm: float, frames: int | None = None
) -> Path:
    """Write ``image`` (H, W) float32 with its pixel size (nm) atomically; returns ``path``."""
    data = np.asarray(image, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"a super-resolution image is (H, W), got shape {data.shape}")
    tmp = path.with_suffix(".tmp.tif")
    meta = {"pixel_size_nm": pixel_nm, "frames": frames, "what": "summed emitter density"}
    px_um = pixel_nm / 1000.0
    tifffile.imwrite(
        tmp,
        data,
        description=json.dumps(meta),
        resolution=(1.0 / px_um, 1.0 / px_um),
        imagej=False,
        metadata=None,
    )
    tmp.replace(path)
    return path


def read_sr_image(path: Path) -> tuple[npt.NDArray[np.float32], float]:
    """The image (H, W) float32 and its pixel size (nm) from a file :func:`write_sr_image` wrote."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            data = np.asarray(page.asarray(), dtype=np.float32)
            meta = json.loads(page.description or "{}")
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise MovieError(f"{path}: cannot read the super-resolution image ({exc})") from None
    return data, float(meta.get("pixel_size_nm", float("nan")))
