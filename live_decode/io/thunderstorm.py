"""ThunderSTORM CSV: localizations and simulator ground truth, in nm and photons.

Format, as ThunderSTORM exports it: a header line of quoted ``"name [unit]"`` column names,
then unquoted numbers separated by commas; positions in nm with the origin at the image corner
(the same as ours); frames 1-based. Our internal frames are 0-based (DESIGN.md §4), so the
writers add 1 and the readers subtract 1.

Readers accept headers whose quoting was mangled by a spreadsheet round trip (the real file in
``shared/data/formats`` has the whole header as one quoted field with doubled quotes): quotes
are stripped before the names are split at commas. Columns we write beyond ThunderSTORM's own
(``uncertainty_x [nm]``, ``uncertainty_y [nm]``, ``prob``, ``uncertainty_intensity [photon]``)
follow its naming; ThunderSTORM and locan load them as extra columns.

2-D localizations are written **without** ``z [nm]`` and ``uncertainty_z [nm]``: a z column
makes locan (and ThunderSTORM's own 3-D filters) treat the file as 3-D, and then locan's
``render_2d``, ``histogram`` and ``Drift`` fail on an all-zero z. The writer is told which by
``with_z`` (the worker passes the model's 2-D/3-D); :func:`has_z` decides it from a table.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from live_decode.closeable import Closeable
from live_decode.errors import LocalizationFileError
from live_decode.io._files import PathLike, as_loc_table, corrupt, existing_file
from live_decode.messages import TRUTH_DTYPE, Localizations, empty_locs

logger = logging.getLogger("live_decode.io.thunderstorm")

LOC_COLUMNS = (
    "id",
    "frame",
    "x [nm]",
    "y [nm]",
    "z [nm]",
    "intensity [photon]",
    "offset [photon]",
    "uncertainty_xy [nm]",
    "uncertainty_z [nm]",
    "uncertainty_x [nm]",
    "uncertainty_y [nm]",
    "prob",
    "uncertainty_intensity [photon]",
)
"""Columns of the localization CSV we write for 3-D data. ``offset`` is the background,
photons/px; ``uncertainty_xy`` is √((σx² + σy²)/2)."""

_Z_COLUMNS = ("z [nm]", "uncertainty_z [nm]")
LOC_COLUMNS_2D = tuple(c for c in LOC_COLUMNS if c not in _Z_COLUMNS)
"""Columns for 2-D data: :data:`LOC_COLUMNS` without z and its uncertainty."""

GROUND_TRUTH_COLUMNS = ("id", "frame", "x [nm]", "y [nm]", "z [nm]", "intensity [photon]")

GROUND_TRUTH_DTYPE = TRUTH_DTYPE  # the one ground-truth table (live_decode.messages)
"""Ground-truth emitters: frame (0-based), emitter id, position in nm, photons in that frame."""

# float32 needs 9 significant digits to survive a text round trip.
_FLOAT_FORMAT = "%.10g"


class ThunderstormWriter(Closeable):
    """Write localizations to a ThunderSTORM CSV as they arrive, flushing every batch.

    A crash loses nothing already appended: every :meth:`append` writes whole lines and flushes
    them to the operating system (and to the disk with ``fsync=True``).

    Parameters
    ----------
    path
        The CSV file; an existing file is overwritten.
    fsync
        Also ``os.fsync`` after every batch (survives a power cut; slower).
    with_z
        Write ``z [nm]`` and ``uncertainty_z [nm]`` (3-D data). When resuming a file, its own
        header decides.
    resume
        Continue an existing file (a restarted worker): a partial last line is cut off.
    """

    def __init__(
        self, path: PathLike, *, fsync: bool = False, resume: bool = False, with_z: bool = True
    ) -> None:
        self.path = os.fspath(path)
        self._fsync = fsync
        self._n_written = 0
        self.columns = LOC_COLUMNS if with_z else LOC_COLUMNS_2D
        if resume and os.path.isfile(self.path) and os.path.getsize(self.path) > 0:
            # Continue a file a crashed writer left: drop a partial last line, keep the rest.
            self._n_written = _truncate_to_last_line(self.path) - 1
            self._file: TextIO | None = open(  # noqa: SIM115 - kept open across appends
                self.path, "a", encoding="utf-8", newline="\n"
            )
            if self._n_written < 0:
                self._n_written = 0
                self._write(_header(self.columns))
            else:
                self.columns = _existing_columns(self.path, self.columns)
            return
        self._file = _open_for_writing(self.path)
        self._write(_header(self.columns))

    @property
    def n_written(self) -> int:
        """Localizations written so far."""
        return self._n_written

    def append(self, locs: npt.NDArray[np.void]) -> None:
        """Append a batch of localizations (:data:`~live_decode.messages.LOC_DTYPE`) and flush."""
        locs = as_loc_table(locs)
        if locs.size == 0:
            return
        sigma_xy = np.sqrt(
            (locs["sigma_x_nm"].astype(np.float64) ** 2 + locs["sigma_y_nm"] ** 2) / 2
        )
        values = {
            "id": np.arange(self._n_written + 1, self._n_written + 1 + locs.size),
            "frame": locs["frame"] + 1,
            "x [nm]": locs["x_nm"],
            "y [nm]": locs["y_nm"],
            "z [nm]": locs["z_nm"],
            "intensity [photon]": locs["photons"],
            "offset [photon]": locs["bg"],
            "uncertainty_xy [nm]": sigma_xy,
            "uncertainty_z [nm]": locs["sigma_z_nm"],
            "uncertainty_x [nm]": locs["sigma_x_nm"],
            "uncertainty_y [nm]": locs["sigma_y_nm"],
            "prob": locs["prob"],
            "uncertainty_intensity [photon]": locs["sigma_photons"],
        }
        self._write(_rows([values[c] for c in self.columns], n_int=2))
        self._n_written += locs.size

    def close(self) -> None:
        """Close the file; further appends raise. Closing twice is harmless."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _write(self, text: str) -> None:
        if self._file is None:
            raise LocalizationFileError(f"{self.path!r} is closed; open a new ThunderstormWriter.")
        self._file.write(text)
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())


def has_z(locs: npt.NDArray[np.void]) -> bool:
    """Whether a table is 3-D: some z is finite and non-zero (a 2-D model's z is 0 or NaN)."""
    z = np.asarray(locs["z_nm"], dtype=np.float64)
    return bool(np.any(np.isfinite(z) & (z != 0)))


def write_thunderstorm_csv(
    path: PathLike, locs: npt.NDArray[np.void], *, with_z: bool | None = None
) -> None:
    """Write a whole localization table as a ThunderSTORM CSV (see :class:`ThunderstormWriter`).

    Parameters
    ----------
    path
        The CSV file; overwritten.
    locs
        (N,) :data:`~live_decode.messages.LOC_DTYPE`.
    with_z
        Write the z columns; None: only if :func:`has_z`.
    """
    with ThunderstormWriter(path, with_z=has_z(locs) if with_z is None else with_z) as writer:
        writer.append(locs)


def read_thunderstorm_csv(path: PathLike) -> Localizations:
    """Read a ThunderSTORM CSV (ours or ThunderSTORM's) into a localization table.

    Parameters
    ----------
    path
        CSV with at least ``frame``, ``x [nm]`` and ``y [nm]``.

    Returns
    -------
    Localizations
        (N,) :data:`~live_decode.messages.LOC_DTYPE`, frames 0-based. Missing columns: z = 0,
        prob = 1 (every row is an accepted detection), the rest NaN. Lateral σ comes from
        ``uncertainty_x/_y``, else ``uncertainty_xy`` or ``uncertainty``, for both axes.

    Raises
    ------
    LocalizationFileError
        If the file is missing, lacks a required column, or has unparsable rows.
    """
    p = existing_file(path, "ThunderSTORM CSV")
    table = _read_table(p, required=("frame", "x [nm]", "y [nm]"))
    n = len(table["frame"])
    nan = np.full(n, np.nan)

    def column(*names: str, default: npt.NDArray[np.float64] = nan) -> npt.NDArray[np.float64]:
        return next((table[name] for name in names if name in table), default)

    locs = empty_locs(n)
    locs["frame"] = np.rint(table["frame"]).astype(np.int64) - 1
    locs["x_nm"], locs["y_nm"] = table["x [nm]"], table["y [nm]"]
    locs["z_nm"] = column("z [nm]", default=np.zeros(n))
    locs["photons"] = column("intensity [photon]")
    locs["bg"] = column("offset [photon]")
    locs["prob"] = column("prob", default=np.ones(n))
    sigma_xy = column("uncertainty_xy [nm]", "uncertainty [nm]")
    locs["sigma_x_nm"] = column("uncertainty_x [nm]", default=sigma_xy)
    locs["sigma_y_nm"] = column("uncertainty_y [nm]", default=sigma_xy)
    locs["sigma_z_nm"] = column("uncertainty_z [nm]")
    locs["sigma_photons"] = column("uncertainty_intensity [photon]")
    return locs


def write_ground_truth_csv(
    path: PathLike,
    frame: npt.ArrayLike,
    id: npt.ArrayLike,
    x_nm: npt.ArrayLike,
    y_nm: npt.ArrayLike,
    z_nm: npt.ArrayLike,
    photons: npt.ArrayLike,
) -> None:
    """Write simulator ground truth as a ThunderSTORM-style CSV.

    Parameters
    ----------
    path
        The CSV file; overwritten.
    frame
        (N,) 0-based frames (written 1-based).
    id
        (N,) emitter ids; one emitter on for several frames keeps its id.
    x_nm, y_nm, z_nm
        (N,) positions, nm (x = column direction, origin at the image corner).
    photons
        (N,) photons emitted in that frame.
    """
    arrays = [np.asarray(a).ravel() for a in (id, frame, x_nm, y_nm, z_nm, photons)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"Ground-truth columns differ in length: {[a.size for a in arrays]}.")
    arrays[1] = arrays[1].astype(np.int64) + 1
    out = _open_for_writing(os.fspath(path))
    with out:
        out.write(_header(GROUND_TRUTH_COLUMNS))
        if arrays[0].size:
            out.write(_rows(arrays, n_int=2))


def read_ground_truth_csv(path: PathLike) -> npt.NDArray[np.void]:
    """Read ground truth written by :func:`write_ground_truth_csv` (or a ThunderSTORM CSV).

    Returns
    -------
    numpy.ndarray
        (N,) :data:`GROUND_TRUTH_DTYPE`, frames 0-based. Missing ``id``: row number;
        missing ``z [nm]``: 0; missing ``intensity [photon]``: NaN.
    """
    p = existing_file(path, "ground-truth CSV")
    table = _read_table(p, required=("frame", "x [nm]", "y [nm]"))
    n = len(table["frame"])
    gt = np.zeros(n, dtype=GROUND_TRUTH_DTYPE)
    gt["frame"] = np.rint(table["frame"]).astype(np.int64) - 1
    gt["id"] = np.rint(table["id"]).astype(np.int64) if "id" in table else np.arange(n)
    gt["x_nm"], gt["y_nm"] = table["x [nm]"], table["y [nm]"]
    gt["z_nm"] = table.get("z [nm]", np.zeros(n))
    gt["photons"] = table.get("intensity [photon]", np.full(n, np.nan))
    return gt


def _truncate_to_last_line(path: str) -> int:
    """Cut ``path`` after its last newline; return the number of complete lines."""
    with open(path, "rb+") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        f.truncate(end)
    return data[:end].count(b"\n")


def _existing_columns(path: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """The layout (2-D or 3-D) of a file being resumed, from its header line."""
    with open(path, encoding="utf-8") as f:
        header = f.readline()
    for layout in (LOC_COLUMNS, LOC_COLUMNS_2D):
        if header == _header(layout):
            return layout
    return default


def _open_for_writing(path: str) -> TextIO:
    try:
        return open(path, "w", encoding="utf-8", newline="\n")
    except OSError as err:
        raise LocalizationFileError(
            f"Cannot write {path!r}: {err.strerror}. Check that the folder exists and is writable."
        ) from err


def _header(columns: tuple[str, ...]) -> str:
    return ",".join(f'"{c}"' for c in columns) + "\n"


def _rows(columns: Sequence[npt.ArrayLike], n_int: int) -> str:
    """CSV lines; the first ``n_int`` columns as integers. NaN/inf spelt as Java parses them."""
    data = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    buffer = io.StringIO()
    np.savetxt(
        buffer, data, fmt=["%d"] * n_int + [_FLOAT_FORMAT] * (data.shape[1] - n_int), delimiter=","
    )
    return buffer.getvalue().replace("nan", "NaN").replace("inf", "Infinity")


def _read_table(path: Path, required: tuple[str, ...]) -> dict[str, npt.NDArray[np.float64]]:
    """Columns of a ThunderSTORM-style CSV by header name, float64."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise corrupt(path, "ThunderSTORM CSV", str(err)) from err
    lines = text.splitlines()
    if not lines:
        raise corrupt(path, "ThunderSTORM CSV", "it is empty (no header line)")
    names = [name.strip() for name in lines[0].replace('"', "").split(",")]
    missing = [name for name in required if name not in names]
    if missing:
        raise corrupt(path, "ThunderSTORM CSV", f"columns {missing} are missing (found {names})")
    body = [line for line in lines[1:] if line.strip()]
    if body and not text.endswith("\n"):
        # A writer that died mid-line leaves a partial last line: keep everything before it.
        logger.warning("%s: ignoring an incomplete last line %r", path, body[-1][:80])
        body = body[:-1]
    if not body:
        return {name: np.empty(0) for name in names}
    try:
        data = np.loadtxt(body, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise corrupt(path, "ThunderSTORM CSV", f"unparsable row ({err})") from err
    if data.shape[1] != len(names):
        raise corrupt(
            path, "ThunderSTORM CSV", f"{data.shape[1]} values per row, {len(names)} names"
        )
    return {name: data[:, i] for i, name in enumerate(names)}
