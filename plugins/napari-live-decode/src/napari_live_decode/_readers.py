"""napari readers for localization files: Picasso HDF5, ThunderSTORM CSV, DECODE h5.

Each ``get_*_reader(path)`` looks at the file cheaply (an HDF5 group, a CSV header) and returns
None when it is not of its format, so napari can offer the file to other readers; otherwise it
returns a function that reads it with ``ld.read_locs`` into one Points layer in **nm**
(``[y_nm, x_nm]``, ``units`` nm; see :mod:`._layers`). Errors reading a file that did look right
are raised with the reader's message (napari shows it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Final

from napari_live_decode._layers import LayerData, points_layer_data

ReaderFunction = Callable[[str | list[str]], list[LayerData]]
PathOrPaths = str | list[str]

THUNDERSTORM_COLUMNS: Final = ("frame", "x [nm]", "y [nm]")


def _single(path: PathOrPaths) -> Path | None:
    """The one file napari passes (a stack of several is not a localization file)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    return p if p.is_file() else None


def _reader(fmt: str) -> ReaderFunction:
    def read(path: PathOrPaths) -> list[LayerData]:
        import live_decode as ld

        p = _single(path)
        if p is None:
            raise ld.LiveDecodeError(f"{path!r}: open one localization file at a time")
        locs = ld.read_locs(p)
        meta = {"source": str(p), "format": fmt}
        return [points_layer_data(locs, name=p.stem, metadata=meta)]

    return read


def get_picasso_reader(path: PathOrPaths) -> ReaderFunction | None:
    """Picasso ``.hdf5`` (a ``/locs`` table; pixel size from its ``.yaml`` sidecar)."""
    p = _single(path)
    if p is None or p.suffix.lower() != ".hdf5" or not _has_h5_node(p, "locs"):
        return None
    return _reader("picasso_hdf5")


def get_thunderstorm_reader(path: PathOrPaths) -> ReaderFunction | None:
    """ThunderSTORM ``.csv`` (ours, ThunderSTORM's, SMAP's export): ``frame``, ``x [nm]``,
    ``y [nm]`` columns."""
    p = _single(path)
    if p is None or p.suffix.lower() != ".csv":
        return None
    try:
        with p.open(encoding="utf-8") as f:
            header = f.readline()
    except (OSError, UnicodeDecodeError):
        return None
    # Column names only, quotes aside: ThunderSTORM itself may quote the whole header line.
    names = {n.strip().strip('"') for n in header.replace('""', '"').strip().strip('"').split(",")}
    if not all(c in names for c in THUNDERSTORM_COLUMNS):
        return None
    return _reader("thunderstorm_csv")


def get_decode_reader(path: PathOrPaths) -> ReaderFunction | None:
    """DECODE ``.h5`` emitter file (``/data`` and ``/meta`` groups)."""
    p = _single(path)
    if p is None or p.suffix.lower() != ".h5":
        return None
    if not (_has_h5_node(p, "data") and _has_h5_node(p, "meta")):
        return None
    return _reader("decode_h5")


def _has_h5_node(path: Path, name: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return name in f
    except OSError:  # not HDF5
        return False
