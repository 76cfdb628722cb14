"""SMAP ``*_sml.mat`` localization files: write (MATLAB v7.3) and read (v7.3 and v7).

SMAP (Ries lab) saves its localizations with MATLAB's ``save(file, 'saveloc', 'fileformat',
'parameters')``: ``saveloc.loc`` is a struct of N×1 columns (``frame`` 1-based, ``xnm``,
``ynm``, ``znm``, ``phot``, ``bg``, ``xnmerr``, ``ynmerr``, ``znmerr``, ``locprecnm``,
``locprecznm``, ``photerr``, ``channel``, ``filenumber``, ...), ``saveloc.file`` describes the
camera file (``name``, ``number``, ``info`` with ``cam_pixelsize_um``, ``Width``, ``Height``,
``roi = [x0 y0 w h]``) and ``fileformat.name = 'sml'``. SMAP writes v7 by default and v7.3
(HDF5) for large files or on request.

We write **v7.3**, because it is HDF5 and needs no MATLAB: h5py writes it, MATLAB's ``load``
(hence SMAP) reads it, and locan's ``load_SMAP_file`` — which opens SMAP files with h5py —
reads only v7.3. The file is a 512-byte MATLAB header (userblock) + HDF5 with MATLAB's
attributes: ``MATLAB_class`` on every node (``struct`` groups, ``double`` / ``char``
datasets), MATLAB's column-major order (an N×1 column is an HDF5 (1, N) dataset).

Conventions: ``xnm``/``ynm`` in nm with x along the image columns and the origin at the image
corner (ours, DESIGN.md §4; no SMAP-written file was available to check SMAP's half-pixel
convention); ``frame`` 1-based (MATLAB); 2-D data is written without ``znm``/``znmerr``/
``locprecznm`` (as for ThunderSTORM CSVs, so readers treat it as 2-D). ``prob`` (detection
probability) is an extra column, which SMAP keeps as a user field.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from live_decode import __version__
from live_decode.errors import LocalizationFileError
from live_decode.io._files import PathLike, as_loc_table, corrupt, existing_file
from live_decode.io.thunderstorm import has_z
from live_decode.messages import Localizations, empty_locs

KIND = "SMAP _sml.mat"
_USERBLOCK_BYTES = 512
_MatValue = npt.NDArray[Any] | str | float | Mapping[str, Any]


def write_smap_sml(
    path: PathLike,
    locs: npt.NDArray[np.void],
    *,
    pixel_size_nm: float,
    width_px: int,
    height_px: int,
    with_z: bool | None = None,
    n_frames: int | None = None,
    camera: Mapping[str, float] | None = None,
) -> Path:
    """Write localizations as a SMAP ``_sml.mat`` (MATLAB v7.3) file.

    Parameters
    ----------
    path
        The file (conventionally ``<name>_sml.mat``); overwritten.
    locs
        (N,) :data:`~live_decode.messages.LOC_DTYPE`, nm, frames 0-based (written 1-based).
    pixel_size_nm
        Square camera pixel, nm (``info.cam_pixelsize_um``).
    width_px, height_px
        Frame size, px (``info.Width``, ``info.Height``, ``info.roi``).
    with_z
        Write ``znm`` and its errors; None: only if z is non-zero somewhere.
    n_frames
        Frames in the movie (``info.numberOfFrames``); default: last frame + 1.
    camera
        Camera numbers for ``info`` (e.g. ``conversion`` e⁻/ADU, ``emgain``, ``offset`` ADU).

    Returns
    -------
    Path
        The file written.
    """
    table = as_loc_table(locs)
    z = has_z(table) if with_z is None else with_z
    sigma_x, sigma_y = (table[f"sigma_{a}_nm"].astype(np.float64) for a in "xy")
    loc: dict[str, npt.NDArray[Any]] = {
        "frame": table["frame"].astype(np.float64) + 1,
        "xnm": table["x_nm"].astype(np.float64),
        "ynm": table["y_nm"].astype(np.float64),
        "phot": table["photons"].astype(np.float64),
        "bg": table["bg"].astype(np.float64),
        "xnmerr": sigma_x,
        "ynmerr": sigma_y,
        "locprecnm": np.sqrt((sigma_x**2 + sigma_y**2) / 2),
        "photerr": table["sigma_photons"].astype(np.float64),
        "prob": table["prob"].astype(np.float64),
        "channel": np.zeros(table.size),
        "filenumber": np.ones(table.size),
    }
    if z:
        loc["znm"] = table["z_nm"].astype(np.float64)
        loc["znmerr"] = loc["locprecznm"] = table["sigma_z_nm"].astype(np.float64)
    frames = n_frames if n_frames is not None else int(table["frame"].max(initial=-1)) + 1
    info: dict[str, _MatValue] = {
        "cam_pixelsize_um": np.array([pixel_size_nm, pixel_size_nm]) / 1000.0,
        "Width": float(width_px),
        "Height": float(height_px),
        "roi": np.array([0.0, 0.0, width_px, height_px]),
        "numberOfFrames": float(frames),
        **{k: float(v) for k, v in (camera or {}).items()},
    }
    out = Path(path)
    saveloc = {
        "loc": loc,
        "file": {"name": str(out), "number": 1.0, "numberOfTif": 0.0, "info": info},
    }
    try:
        with h5py.File(out, "w", userblock_size=_USERBLOCK_BYTES) as f:
            _write_struct(f, "saveloc", saveloc)
            _write_struct(f, "fileformat", {"name": "sml"})
        with open(out, "r+b") as f:
            f.write(_matlab_header())
    except OSError as err:
        raise LocalizationFileError(
            f"Cannot write {str(out)!r}: {err}. Check that the folder exists and is writable."
        ) from err
    return out


def read_smap_sml(path: PathLike) -> Localizations:
    """Read a SMAP ``_sml.mat`` (v7.3 via h5py, v7 via scipy) into a localization table.

    Returns
    -------
    Localizations
        (N,) :data:`~live_decode.messages.LOC_DTYPE`, frames 0-based. Missing columns: z = 0,
        prob = 1, lateral σ from ``xnmerr``/``ynmerr`` else ``locprecnm``, the rest NaN.

    Raises
    ------
    LocalizationFileError
        If the file is missing, not a MATLAB file, or has no ``saveloc.loc`` with frame, xnm
        and ynm.
    """
    p = existing_file(path, KIND)
    columns = _read_v73(p) if h5py.is_hdf5(p) else _read_v7(p)
    missing = [c for c in ("frame", "xnm", "ynm") if c not in columns]
    if missing:
        raise corrupt(p, KIND, f"saveloc.loc lacks {missing} (has {sorted(columns)})")
    n = columns["frame"].size

    def column(*names: str, default: float = math.nan) -> npt.NDArray[np.float64]:
        found = next((columns[c] for c in names if c in columns), None)
        return np.full(n, default) if found is None else found

    locs = empty_locs(n)
    locs["frame"] = np.rint(columns["frame"]).astype(np.int64) - 1
    locs["x_nm"], locs["y_nm"] = columns["xnm"], columns["ynm"]
    locs["z_nm"] = column("znm", default=0.0)
    locs["photons"], locs["bg"] = column("phot"), column("bg")
    locs["sigma_x_nm"] = column("xnmerr", "locprecnm")
    locs["sigma_y_nm"] = column("ynmerr", "locprecnm")
    locs["sigma_z_nm"] = column("znmerr", "locprecznm")
    locs["sigma_photons"] = column("photerr")
    locs["prob"] = column("prob", default=1.0)
    return locs


def _matlab_header() -> bytes:
    """MATLAB's 128-byte MAT-file header for v7.3, padded to the 512-byte userblock."""
    created = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime())
    text = (
        f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {created} "
        f"HDF5 schema 1.00 . Written by live_decode {__version__}"
    ).encode("ascii")[:116]
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    return header.ljust(_USERBLOCK_BYTES, b"\x00")


def _write_struct(parent: h5py.Group, name: str, fields: Mapping[str, Any]) -> None:
    group = parent.create_group(name)
    group.attrs["MATLAB_class"] = np.bytes_("struct")
    for key, value in fields.items():
        if isinstance(value, Mapping):
            _write_struct(group, key, value)
        elif isinstance(value, str):
            codes = np.frombuffer(value.encode("utf-16-le"), dtype=np.uint16)
            ds = group.create_dataset(key, data=codes.reshape(-1, 1))  # MATLAB 1×n char
            ds.attrs["MATLAB_class"] = np.bytes_("char")
            ds.attrs["MATLAB_int_decode"] = np.int32(2)
        else:
            array = np.atleast_1d(np.asarray(value, dtype=np.float64))
            ds = group.create_dataset(key, data=array.reshape(1, -1))  # MATLAB n×1 / 1×1
            ds.attrs["MATLAB_class"] = np.bytes_("double")


def _read_v73(path: Path) -> dict[str, npt.NDArray[np.float64]]:
    try:
        with h5py.File(path, "r") as f:
            loc = f.get("saveloc/loc")
            if not isinstance(loc, h5py.Group):
                raise corrupt(path, KIND, "it has no saveloc.loc struct")
            return {
                name: np.asarray(node[()], dtype=np.float64).ravel()
                for name, node in loc.items()
                if isinstance(node, h5py.Dataset) and node.shape and node.dtype.kind in "fiub"
            }
    except OSError as err:
        raise corrupt(path, KIND, f"HDF5 error ({err})") from err


def _read_v7(path: Path) -> dict[str, npt.NDArray[np.float64]]:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        mat = loadmat(path, variable_names=["saveloc"], squeeze_me=True, struct_as_record=False)
    except (MatReadError, ValueError, OSError) as err:
        raise corrupt(path, KIND, f"not a MATLAB file ({err})") from err
    saveloc = mat.get("saveloc")
    loc = getattr(saveloc, "loc", None)
    if loc is None:
        raise corrupt(path, KIND, "it has no saveloc.loc struct")
    names: list[str] = list(getattr(loc, "_fieldnames", []))
    out = {}
    for name in names:
        values = np.asarray(getattr(loc, name))
        if values.dtype.kind in "fiub":
            out[name] = values.astype(np.float64).ravel()
    return out
