"""Every localization file format we read or write, by name and by file name.

The run directory always holds ``locs.csv`` (ThunderSTORM) and ``locs.hdf5`` (Picasso), written
as the localizations arrive. :data:`EXTRA_FORMATS` are written once, complete, when the worker
finishes (``inference.extra_formats`` in the config): DECODE ``locs.decode.h5`` and SMAP
``locs_sml.mat``. :func:`read_locs` reads any of them (and the other tools' own files) by
suffix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from live_decode.errors import LocalizationFileError
from live_decode.io._files import PathLike
from live_decode.io.decode_h5 import read_decode_h5, write_decode_h5
from live_decode.io.picasso import read_picasso_hdf5
from live_decode.io.smap import read_smap_sml, write_smap_sml
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import Localizations

ExtraFormat = Literal["decode_h5", "smap"]

EXTRA_FORMATS: Final[dict[str, str]] = {"decode_h5": "locs.decode.h5", "smap": "locs_sml.mat"}
"""Format name → file name in the run directory."""


def write_extra_formats(
    locs: npt.NDArray[np.void],
    run_dir: Path,
    formats: Iterable[str],
    *,
    pixel_size_nm: float,
    width_px: int,
    height_px: int,
    with_z: bool,
    camera: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write ``locs`` into ``run_dir`` in each of ``formats`` (names of :data:`EXTRA_FORMATS`).

    Parameters
    ----------
    locs
        (N,) :data:`~live_decode.messages.LOC_DTYPE`.
    run_dir
        The run directory (exists).
    formats
        ``decode_h5`` and/or ``smap``.
    pixel_size_nm, width_px, height_px
        The camera's pixel size (nm) and frame size (px).
    with_z
        Whether the model predicts z (SMAP: ``znm`` columns).
    camera
        Camera numbers recorded by formats that keep them (SMAP ``info``).

    Returns
    -------
    list of Path
        The files written.
    """
    written = []
    for name in formats:
        if name not in EXTRA_FORMATS:
            raise ValueError(f"Unknown localization format {name!r}; use one of {EXTRA_FORMATS}.")
        path = run_dir / EXTRA_FORMATS[name]
        if name == "decode_h5":
            written.append(write_decode_h5(path, locs, pixel_size_nm))
        else:
            written.append(
                write_smap_sml(
                    path,
                    locs,
                    pixel_size_nm=pixel_size_nm,
                    width_px=width_px,
                    height_px=height_px,
                    with_z=with_z,
                    camera=camera,
                )
            )
    return written


def read_locs(path: PathLike, *, pixel_size_nm: float | None = None) -> Localizations:
    """Read a localization file by its suffix: ``.csv``, ``.hdf5``, ``.h5``, ``.mat``.

    Parameters
    ----------
    path
        ThunderSTORM CSV, Picasso HDF5 (+ sidecar), DECODE h5 or SMAP ``_sml.mat``.
    pixel_size_nm
        For Picasso files without ``Pixelsize`` in their metadata.

    Returns
    -------
    Localizations
        (N,) :data:`~live_decode.messages.LOC_DTYPE`, nm, frames 0-based.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return read_thunderstorm_csv(p)
    if suffix == ".hdf5":
        return read_picasso_hdf5(p, pixel_size_nm=pixel_size_nm)
    if suffix == ".h5":
        return read_decode_h5(p)
    if suffix == ".mat":
        return read_smap_sml(p)
    raise LocalizationFileError(
        f"Cannot tell the format of {str(p)!r} from its suffix: use .csv (ThunderSTORM), .hdf5 "
        "(Picasso), .h5 (DECODE) or .mat (SMAP)."
    )
