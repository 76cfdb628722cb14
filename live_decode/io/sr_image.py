"""The super-resolution image a network yields directly (Deep-STORM): a float32 TIFF.

``sr_image.tif`` in the run directory holds the sum of the network's density tiles over every
processed frame, (H·u, W·u) pixels of ``pixel_size_nm / u``, with the pixel size in the ImageJ
resolution tags (so Fiji shows nm) and in the description.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import tifffile

from live_decode.errors import MovieError

SR_IMAGE_NAME = "sr_image.tif"


class SrImage(NamedTuple):
    """A super-resolution image read back: pixels (H, W) float32, pixel size (nm, NaN if the
    file does not say), and the frames summed into it (None if it does not say)."""

    pixels: npt.NDArray[np.float32]
    pixel_nm: float
    frames: int | None


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


def read_sr_image(path: Path) -> SrImage:
    """The image, its pixel size (nm) and frame count from a file :func:`write_sr_image` wrote.

    Raises
    ------
    MovieError
        If the file cannot be read as a TIFF, or is not a 2-D image.
    """
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            data = np.asarray(page.asarray(), dtype=np.float32)
            description = page.description or "{}"
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise MovieError(f"{path}: cannot read the super-resolution image ({exc})") from None
    if data.ndim != 2:
        raise MovieError(f"{path}: a super-resolution image is (H, W), got shape {data.shape}")
    try:
        meta = json.loads(description)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):  # another tool's TIFF: pixels without our metadata
        meta = {}
    pixel_nm, frames = meta.get("pixel_size_nm"), meta.get("frames")
    return SrImage(
        data,
        float(pixel_nm) if isinstance(pixel_nm, int | float) else float("nan"),
        frames if isinstance(frames, int) and not isinstance(frames, bool) else None,
    )
