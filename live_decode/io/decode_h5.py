"""Read DECODE's HDF5 emitter files (``EmitterSet.save(... .h5)``, DECODE 0.10).

Layout (measured on a real DECODE 0.10 file): ``/data/{xyz (N, 3), xyz_sig, xyz_cr, phot,
phot_sig, phot_cr, frame_ix, id, prob, bg, bg_sig, bg_cr}`` (an all-NaN column is stored as an
HDF5 *empty* dataset), ``/meta`` attributes ``xy_unit`` ('px' or 'nm') and ``px_size`` (2,),
``/decode`` attribute ``version``.

Conventions converted here: DECODE's x is the frame **row** (our y) and its y the column (our x);
pixel centres are at integer coordinates; ``px_size`` is ordered like DECODE's (x, y), i.e.
(row, column). z and its σ are always nm; frames are 0-based like ours. So, in px units,
``y_nm = (x_decode + 0.5) · px_size[0]`` and ``x_nm = (y_decode + 0.5) · px_size[1]``.
"""

from __future__ import annotations

import math
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from live_decode.errors import LocalizationFileError
from live_decode.io._files import PathLike, corrupt, existing_file
from live_decode.messages import Localizations, empty_locs

KIND = "DECODE h5"


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
