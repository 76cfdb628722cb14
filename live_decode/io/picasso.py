"""Picasso HDF5 localizations (+ the YAML sidecar Picasso requires), written as they arrive.

Picasso's conventions (measured on Picasso's own files and code, picassosr 0.11):

- ``/locs`` is one compound dataset; ``frame`` is uint32 and 0-based; ``x``, ``y``, ``sx``,
  ``sy``, ``lpx``, ``lpy`` are in camera pixels; ``z`` and ``lpz`` in nm; ``bg`` in photons/px.
- Pixel centres are at integer coordinates, so ``x_px = x_nm / pixel_size − 0.5``.
- The sidecar ``<stem>.yaml`` is a list of YAML documents; Picasso searches them (last first) for
  ``Width``, ``Height``, ``Frames`` (required, and 0 counts as missing) and ``Pixelsize`` (nm).
  Picasso ≥ 0.11 also reads the same list as JSON from a ``/metadata`` dataset; we write both.
- On loading (``picasso.io.load_locs`` → ``picasso.lib.ensure_sanity``), Picasso drops every
  row with a NaN or inf in any column, rows with x ≥ Width or y ≥ Height, and rows where any
  of x, y, lpx, lpy, lpz, photons, sx, sy is negative. With pixel centres at integers, pixel 0
  covers x ∈ [−0.5, 0.5): an emitter in the outer half of an edge pixel (x_nm < pixel/2) has
  x < 0 and would be silently lost (0.45 % of the demo's localizations).

How we keep every localization (the choice, and why): rows outside Picasso's [0, Width) ×
[0, Height) are **clipped onto the edge** in ``x``/``y`` — a move of at most half a pixel that
keeps them in the pixel they were found in — and the shift is stored, not hidden: the extra
columns ``dx_edge_px``/``dy_edge_px`` hold written − true position (0 for all other rows), the
sidecar records how many rows were clipped, and :func:`read_picasso_hdf5` subtracts the shift,
so our own round trip is exact. Shifting every coordinate by half a pixel was rejected (every
position would disagree with Picasso's convention and with the raw movie), so was dropping rows
(data loss) or moving the origin in the metadata (Picasso has no such field). Picasso's own
additive operations (undrift, alignment) move ``x`` and keep the stored shift valid. NaN in a
non-coordinate column is not ours to invent a value for; the network always fills them.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import yaml

from live_decode import __version__, strict_json
from live_decode.closeable import Closeable
from live_decode.errors import LocalizationFileError
from live_decode.io._files import PathLike, as_loc_table, corrupt, existing_file
from live_decode.messages import Localizations, empty_locs

_BASE_COLUMNS = [("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("photons", "<f4")]
_PSF_COLUMNS = [("sx", "<f4"), ("sy", "<f4")]
_PRECISION_COLUMNS = [("bg", "<f4"), ("lpx", "<f4"), ("lpy", "<f4")]
_Z_COLUMNS = [("z", "<f4"), ("lpz", "<f4")]
_EXTRA_COLUMNS = [
    ("prob", "<f4"),
    ("sigma_photons", "<f4"),
    ("dx_edge_px", "<f4"),
    ("dy_edge_px", "<f4"),
]
EDGE_CLIP_KEY = "Clipped onto the image edge (x/y minus dx/dy_edge_px = true)"
"""Sidecar entry: how many rows were moved inside Picasso's [0, Width) × [0, Height)."""


def sidecar_path(path: PathLike) -> Path:
    """The YAML file Picasso looks for next to ``path``: same stem, suffix ``.yaml``."""
    return Path(path).with_suffix(".yaml")


CHUNK_ROWS = 4096  # rows per HDF5 chunk of the locs dataset
FREE_MARGIN_BYTES = 64 << 10  # besides the chunks a batch may allocate: metadata, the sidecar


class PicassoWriter(Closeable):
    """Write localizations to a Picasso HDF5 file + YAML sidecar, flushing every batch.

    The ``locs`` dataset is resizable; each :meth:`append` grows it, writes the rows, flushes
    the file and rewrites the sidecar's ``Frames``. A crash loses nothing already appended.

    Parameters
    ----------
    path
        The ``.hdf5`` file; an existing file (and its sidecar) is overwritten.
    width_px, height_px
        Camera frame size, pixels.
    pixel_size_nm
        Camera pixel size in the sample plane, nm (square pixels).
    n_frames
        Frames in the movie, if known; otherwise the last frame seen + 1 is recorded.
    with_z
        Write ``z`` and ``lpz`` (Picasso then treats the data as 3-D).
    psf_sigma_nm
        PSF standard deviation for Picasso's ``sx``/``sy`` columns, nm. The network does not fit
        a PSF width, so without a value these columns are left out rather than invented.
    extra_info
        More entries for the sidecar's live_decode document (e.g. model name, camera).
    """

    def __init__(
        self,
        path: PathLike,
        *,
        width_px: int,
        height_px: int,
        pixel_size_nm: float,
        n_frames: int | None = None,
        with_z: bool = True,
        psf_sigma_nm: float | None = None,
        extra_info: Mapping[str, Any] | None = None,
        resume: bool = False,
    ) -> None:
        if width_px <= 0 or height_px <= 0 or not pixel_size_nm > 0:
            raise ValueError(
                f"width_px, height_px and pixel_size_nm must be > 0, got {width_px}, "
                f"{height_px}, {pixel_size_nm}."
            )
        self.path = Path(path)
        self.pixel_size_nm = float(pixel_size_nm)
        self._psf_sigma_px = None if psf_sigma_nm is None else psf_sigma_nm / pixel_size_nm
        self._with_z = with_z
        columns = _BASE_COLUMNS + (_PSF_COLUMNS if psf_sigma_nm is not None else [])
        columns += _PRECISION_COLUMNS + (_Z_COLUMNS if with_z else []) + _EXTRA_COLUMNS
        self.dtype = np.dtype(columns)
        self._n_frames = max(int(n_frames or 0), 1)
        self._n_clipped = 0
        self._movie_info: dict[str, Any] = {"Frames": 0, "Height": height_px, "Width": width_px}
        self._our_info: dict[str, Any] = {
            "Generated by": f"live_decode {__version__}",
            "Pixelsize": self.pixel_size_nm,
            **(extra_info or {}),
        }
        if resume and self.path.is_file() and self._resume():
            return
        try:
            self._file: h5py.File | None = h5py.File(self.path, "w")
        except OSError as err:
            raise LocalizationFileError(
                f"Cannot write {str(self.path)!r}: {err}. Check that the folder exists and is "
                "writable."
            ) from err
        self._locs = self._file.create_dataset(
            "locs", shape=(0,), maxshape=(None,), dtype=self.dtype, chunks=(CHUNK_ROWS,)
        )
        self._metadata = self._file.create_dataset("metadata", shape=(), dtype=h5py.string_dtype())
        self._write_info(self._file)

    def _resume(self) -> bool:
        """Reopen an existing file of the same layout for appending; False if it is unusable."""
        try:
            file = h5py.File(self.path, "a")
        except OSError:
            return False
        locs = file.get("locs")
        meta = file.get("metadata")
        if not isinstance(locs, h5py.Dataset) or locs.dtype != self.dtype or meta is None:
            file.close()
            return False
        self._file, self._locs, self._metadata = file, locs, meta
        if locs.shape[0]:
            self._n_frames = max(self._n_frames, int(locs["frame"][-1]) + 1)
            shifted = (locs["dx_edge_px"][()] != 0) | (locs["dy_edge_px"][()] != 0)
            self._n_clipped = int(np.count_nonzero(shifted))
        self._write_info(file)
        return True

    @property
    def n_written(self) -> int:
        """Localizations written so far."""
        return int(self._locs.shape[0])

    def _ensure_room(self, n_rows: int) -> None:
        """Refuse a batch the disk may not hold: HDF5 left half-written by a full disk cannot be
        reopened (and the library may crash the process), so stop while the file is whole."""
        start = self._locs.shape[0]
        new_chunks = -(-(start + n_rows) // CHUNK_ROWS) - -(-start // CHUNK_ROWS)
        need = new_chunks * CHUNK_ROWS * self.dtype.itemsize + FREE_MARGIN_BYTES
        free = shutil.disk_usage(self.path.parent).free
        if free < need:
            raise OSError(
                errno.ENOSPC,
                f"No space left on device: {free} bytes free, {need} needed to append "
                f"{n_rows} localizations safely; free some space (the file so far is complete)",
                str(self.path),
            )

    def append(self, locs: npt.NDArray[np.void]) -> None:
        """Append a batch of localizations (:data:`~live_decode.messages.LOC_DTYPE`) and flush.

        Raises OSError (ENOSPC) before writing when the disk may not hold the batch.
        """
        if self._file is None:
            raise LocalizationFileError(f"{str(self.path)!r} is closed; open a new PicassoWriter.")
        locs = as_loc_table(locs)
        if locs.size == 0:
            return
        if locs["frame"].min() < 0:
            raise ValueError("Picasso frames are unsigned: got a negative frame index.")
        rows = self._to_picasso(locs)
        self._ensure_room(rows.size)
        start = self._locs.shape[0]
        self._locs.resize((start + rows.size,))
        self._locs[start:] = rows
        self._n_frames = max(self._n_frames, int(locs["frame"].max()) + 1)
        self._write_info(self._file)

    def close(self) -> None:
        """Close the file; further appends raise. Closing twice is harmless."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _to_picasso(self, locs: Localizations) -> npt.NDArray[np.void]:
        px = self.pixel_size_nm
        rows = np.zeros(locs.size, dtype=self.dtype)
        rows["frame"] = locs["frame"]
        for axis, size in (("x", self._movie_info["Width"]), ("y", self._movie_info["Height"])):
            true = (locs[f"{axis}_nm"] / px - 0.5).astype(np.float32)
            # Picasso keeps 0 ≤ x < Width: clip onto the edge, remember the shift.
            top = np.nextafter(np.float32(size), np.float32(0))
            rows[axis] = np.clip(true, np.float32(0), top)
            rows[f"d{axis}_edge_px"] = rows[axis] - true
        self._n_clipped += int(
            np.count_nonzero((rows["dx_edge_px"] != 0) | (rows["dy_edge_px"] != 0))
        )
        rows["photons"], rows["bg"] = locs["photons"], locs["bg"]
        rows["lpx"], rows["lpy"] = locs["sigma_x_nm"] / px, locs["sigma_y_nm"] / px
        if self._psf_sigma_px is not None:
            rows["sx"] = rows["sy"] = self._psf_sigma_px
        if self._with_z:
            rows["z"], rows["lpz"] = locs["z_nm"], locs["sigma_z_nm"]
        rows["prob"], rows["sigma_photons"] = locs["prob"], locs["sigma_photons"]
        return rows

    def _write_info(self, file: h5py.File) -> None:
        """Update ``Frames`` in ``/metadata`` and in the sidecar (atomically); flush the file."""
        self._movie_info["Frames"] = self._n_frames
        self._our_info[EDGE_CLIP_KEY] = self._n_clipped
        info = [self._movie_info, self._our_info]
        self._metadata[()] = strict_json.dumps(info)
        file.flush()
        sidecar = sidecar_path(self.path)
        tmp = sidecar.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump_all(info, default_flow_style=False), encoding="utf-8")
        os.replace(tmp, sidecar)


def read_picasso_info(path: PathLike) -> list[dict[str, Any]]:
    """Picasso's metadata for ``path``: the sidecar YAML documents, else ``/metadata`` JSON.

    Raises
    ------
    LocalizationFileError
        If neither exists or they cannot be parsed.
    """
    p = existing_file(path, "Picasso HDF5")
    sidecar = sidecar_path(p)
    try:
        if sidecar.is_file():
            with sidecar.open(encoding="utf-8") as f:
                docs = list(yaml.load_all(f, Loader=_LenientLoader))  # a SafeLoader
            return [d for d in docs if isinstance(d, dict)]
        with h5py.File(p, "r") as f:
            if "metadata" in f:
                raw = f["metadata"][()]
                info = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
                return [d for d in info if isinstance(d, dict)]
    except (OSError, yaml.YAMLError, ValueError) as err:
        raise corrupt(p, "Picasso HDF5", f"its metadata cannot be read ({err})") from err
    raise LocalizationFileError(
        f"Picasso file {str(p)!r} has no metadata: {str(sidecar)!r} is missing and the file has "
        "no /metadata dataset. Put the .yaml file written with it next to it."
    )


def read_picasso_hdf5(path: PathLike, *, pixel_size_nm: float | None = None) -> Localizations:
    """Read a Picasso HDF5 localization file into a localization table.

    Parameters
    ----------
    path
        The ``.hdf5`` file (with its ``.yaml`` sidecar or embedded ``/metadata``).
    pixel_size_nm
        Pixel size, nm; overrides ``Pixelsize`` in the metadata (required if it is absent).

    Returns
    -------
    Localizations
        (N,) :data:`~live_decode.messages.LOC_DTYPE`. Missing columns: z = 0, prob = 1,
        the rest NaN.
    """
    p = existing_file(path, "Picasso HDF5")
    if pixel_size_nm is None:
        found = next(
            (d["Pixelsize"] for d in reversed(read_picasso_info(p)) if "Pixelsize" in d), None
        )
        if found is None:
            raise LocalizationFileError(
                f"Picasso file {str(p)!r} does not record its pixel size (no 'Pixelsize' in its "
                "metadata); pass pixel_size_nm."
            )
        pixel_size_nm = float(found)
    try:
        with h5py.File(p, "r") as f:
            dataset = f.get("locs")
            if not isinstance(dataset, h5py.Dataset) or dataset.dtype.names is None:
                raise corrupt(p, "Picasso HDF5", "it has no 'locs' table")
            rows = dataset[()]
    except OSError as err:
        raise corrupt(p, "Picasso HDF5", f"HDF5 error ({err})") from err
    names = rows.dtype.names or ()
    missing = [c for c in ("frame", "x", "y") if c not in names]
    if missing:
        raise corrupt(p, "Picasso HDF5", f"its 'locs' table lacks columns {missing}")
    n = rows.size

    def column(name: str, default: float, scale: float = 1.0) -> npt.NDArray[np.float64]:
        if name not in names:
            return np.full(n, default)
        return np.asarray(rows[name], dtype=np.float64) * scale

    px = pixel_size_nm
    locs = empty_locs(n)
    locs["frame"] = rows["frame"]
    # dx/dy_edge_px: our shift onto Picasso's image (0 in files from other tools).
    locs["x_nm"] = (column("x", math.nan) - column("dx_edge_px", 0.0) + 0.5) * px
    locs["y_nm"] = (column("y", math.nan) - column("dy_edge_px", 0.0) + 0.5) * px
    locs["z_nm"] = column("z", 0.0)
    locs["photons"] = column("photons", math.nan)
    locs["bg"] = column("bg", math.nan)
    locs["prob"] = column("prob", 1.0)
    locs["sigma_x_nm"] = column("lpx", math.nan, px)
    locs["sigma_y_nm"] = column("lpy", math.nan, px)
    locs["sigma_z_nm"] = column("lpz", math.nan)
    locs["sigma_photons"] = column("sigma_photons", math.nan)
    return locs


class _LenientLoader(yaml.SafeLoader):
    """SafeLoader that reads Picasso's ``!!python/tuple`` and similar tags as plain data."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_LenientLoader.add_multi_constructor("tag:yaml.org,2002:python/", _plain)
