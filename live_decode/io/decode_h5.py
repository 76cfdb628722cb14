"""DECODE's HDF5 emitter files (``EmitterSet.save(... .h5)``, DECODE 0.10): read and write.

Layout (measured on a real DECODE 0.10 file): ``/data/{xyz (N, 3), xyz_sig, xyz_cr, phot,
phot_sig, phot_cr, frame_ix, id, prob, bg, bg_sig, bg_cr}`` (an all-NaN column is stored as an
HDF5 *empty* dataset), ``/meta`` attributes ``xy_unit`` ('px' or 'nm') and ``px_size`` (2,),
``/decode`` attribute ``version``.

Conventions converted here: DECODE's x is the frame **row** (our y) and its y the column (our x);
pixel centres are at integer coordinates; ``px_size`` is ordered like DECODE's (x, y), i.e.
(row, column). z and its σ are always nm; frames are 0-based like ours. So, in px units,
``y_nm = (x_decode + 0.5) · px_size[0]`` and ``x_nm = (y_decode + 0.5) · px_size[1]``.

:func:`write_decode_h5` writes the same layout (px units, float32 like DECODE, empty datasets
for the Cramér-Rao columns we do not compute), so DECODE's ``EmitterSet.load``, locan's
``load_decode_file`` and :func:`read_decode_h5` read it. DECODE's ``xyz`` is always (N, 3): a
2-D table has z = 0 there, as in DECODE's own 2-D files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from live_decode import __version__
from live_decode.errors import LocalizationFileError
from live_decode.io._files import PathLike, as_loc_table, corrupt, existing_file
from live_decode.messages import Localizations, empty_locs

KIND = "DECODE h5"
DECODE_LAYOUT_VERSION = "0.10.0"
"""The DECODE release whose ``EmitterSet.save`` layout we write (``/decode`` ``version``)."""


def write_decode_h5(path: PathLike, locs: np.ndarray, pixel_size_nm: float) -> Path:
    """Write localizations as a DECODE ``.h5`` emitter file (DECODE's axes and pixel centres).

    Parameters
    ----------
    path
        The ``.h5`` file; overwritten.
    locs
        (N,) :data:`~live_decode.messages.LOC_DTYPE`, nm, frames 0-based (DECODE's too).
    pixel_size_nm
        Square camera pixel, nm; written as ``/meta px_size`` with ``xy_unit = 'px'``.

    Returns
    -------
    Path
        The file written.
    """
    if not pixel_size_nm > 0:
        raise ValueError(f"pixel_size_nm must be > 0, got {pixel_size_nm}.")
    table = as_loc_table(locs)
    px = float(pixel_size_nm)
    # DECODE: x = row (our y), y = column (our x), pixel centres at integers.
    xyz = np.column_stack(
        [table["y_nm"] / px - 0.5, table["x_nm"] / px - 0.5, table["z_nm"]]
    ).astype(np.float32)
    sig = np.column_stack(
        [table["sigma_y_nm"] / px, table["sigma_x_nm"] / px, table["sigma_z_nm"]]
    ).astype(np.float32)
    columns: dict[str, npt.NDArray[Any] | None] = {
        "xyz": xyz,
        "xyz_sig": sig,
        "xyz_cr": None,
        "phot": table["photons"].astype(np.float32),
        "phot_sig": table["sigma_photons"].astype(np.float32),
        "phot_cr": None,
        "frame_ix": table["frame"].astype(np.int64),
        "id": np.arange(table.size, dtype=np.int64),
        "prob": table["prob"].astype(np.float32),
        "bg": table["bg"].astype(np.float32),
        "bg_sig": None,
        "bg_cr": None,
    }
    out = Path(path)
    try:
        with h5py.File(out, "w") as f:
            f.attrs["written_by"] = f"live_decode {__version__}"
            data = f.create_group("data")
            for name, values in columns.items():
                if values is None:  # DECODE's placeholder for an all-NaN column
                    data.create_dataset(name, data=h5py.Empty(np.float32))
                else:
                    data.create_dataset(name, data=values)
            meta = f.create_group("meta")
            meta.attrs["px_size"] = np.array([px, px], dtype=np.float32)
            meta.attrs["xy_unit"] = "px"
            f.create_group("decode").attrs["version"] = DECODE_LAYOUT_VERSION
    except OSError as err:
        raise LocalizationFileError(
            f"Cannot write {str(out)!r}: {err}. Check that the folder exists and is writable."
        ) from err
    return out


def read_decode_h5(path: PathLike) -> Localizations:
    """Read a DECODE ``.h5`` emitter file into a localization table.

    Parameters
    ----------
    path
        The ``.h5`` file written by DECODE's ``EmitterSet.save``.

    Returns
    -------
    Localizations
        (N,) :data:`~live_decode.messages.LOC_DTYPE` in our convention (x = column, pixel j
        covers [j, j+1) px), nm. Columns DECODE left empty are NaN (prob: 1).

    Raises
    ------
    LocalizationFileError
        If the file is missing, not HDF5, or not laid out like a DECODE emitter file.
    """
    p = existing_file(path, KIND)
    try:
        with h5py.File(p, "r") as f:
            data, meta = f.get("data"), f.get("meta")
            if not isinstance(data, h5py.Group) or not isinstance(meta, h5py.Group):
                raise corrupt(p, KIND, "it has no /data and /meta groups")
            unit = _text(meta.attrs.get("xy_unit"))
            px_size = meta.attrs.get("px_size")
            columns = {name: _read(data, name) for name in data}
    except OSError as err:
        raise corrupt(p, KIND, f"HDF5 error ({err})") from err
    xyz = columns.get("xyz")
    if xyz is None or xyz.ndim != 2 or xyz.shape[1] != 3:
        raise corrupt(p, KIND, "/data/xyz is missing or not (N, 3)")
    n = xyz.shape[0]
    row_nm, col_nm = _pixel_size_nm(px_size, p)
    if unit == "px":
        scale_row, scale_col = row_nm, col_nm
    elif unit == "nm":
        scale_row = scale_col = 1.0
    else:
        raise corrupt(p, KIND, f"/meta xy_unit is {unit!r}, expected 'px' or 'nm'")

    def column(name: str, default: float = math.nan) -> npt.NDArray[np.float64]:
        values = columns.get(name)
        return np.full(n, default) if values is None else values.astype(np.float64).reshape(n)

    sig = columns.get("xyz_sig")
    sig = np.full((n, 3), math.nan) if sig is None else sig.astype(np.float64).reshape(n, 3)
    frame = columns.get("frame_ix")
    if frame is None:
        raise corrupt(p, KIND, "/data/frame_ix is missing")
    locs = empty_locs(n)
    locs["frame"] = frame.astype(np.int64).reshape(n)
    locs["x_nm"] = xyz[:, 1] * scale_col + 0.5 * col_nm
    locs["y_nm"] = xyz[:, 0] * scale_row + 0.5 * row_nm
    locs["z_nm"] = xyz[:, 2]
    locs["sigma_x_nm"] = sig[:, 1] * scale_col
    locs["sigma_y_nm"] = sig[:, 0] * scale_row
    locs["sigma_z_nm"] = sig[:, 2]
    locs["photons"] = column("phot")
    locs["sigma_photons"] = column("phot_sig")
    locs["bg"] = column("bg")
    locs["prob"] = column("prob", 1.0)
    return locs


def _read(group: h5py.Group, name: str) -> npt.NDArray[Any] | None:
    """A dataset's values, or None for DECODE's empty (all-NaN) placeholders."""
    node = group[name]
    if not isinstance(node, h5py.Dataset) or node.shape is None:
        return None
    return np.asarray(node[()])


def _pixel_size_nm(px_size: Any, path: Any) -> tuple[float, float]:
    """DECODE's px_size as (row, column) nm; needed in both units to place pixel centres."""
    size = np.asarray(px_size, dtype=np.float64).ravel() if px_size is not None else np.empty(0)
    if size.size == 1:
        size = np.repeat(size, 2)
    if size.size != 2 or not np.all(size > 0):
        raise LocalizationFileError(
            f"DECODE file {str(path)!r} has no valid /meta px_size (got {px_size!r}); without it "
            "pixel coordinates cannot be converted. Re-save the EmitterSet with px_size set."
        )
    return float(size[0]), float(size[1])


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)
