"""Shared checks of the localization-file readers and writers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt

from live_decode.errors import LocalizationFileError
from live_decode.messages import LOC_DTYPE, Localizations

PathLike = str | os.PathLike[str]


def existing_file(path: PathLike, kind: str) -> Path:
    """``path`` as a Path, or :class:`LocalizationFileError` if it is not a readable file."""
    p = Path(path)
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise LocalizationFileError(
            f"Cannot read {kind} file {str(p)!r}: it {what}. Check the path (relative paths start "
            f"at {os.getcwd()!r})."
        )
    return p


def corrupt(path: Path, kind: str, reason: str) -> LocalizationFileError:
    """The error for a file that exists but cannot be parsed as ``kind``."""
    return LocalizationFileError(
        f"Cannot read {str(path)!r} as a {kind} file: {reason}. Check that the file is complete "
        f"and really is a {kind} file (re-export it from the tool that wrote it)."
    )


def as_loc_table(locs: npt.NDArray[np.void]) -> Localizations:
    """``locs`` with exactly :data:`LOC_DTYPE`, or ValueError naming the missing fields."""
    if locs.dtype == LOC_DTYPE:
        return locs
    names = locs.dtype.names or ()
    missing = [n for n in LOC_DTYPE.names or () if n not in names]
    if missing:
        raise ValueError(
            f"Localizations must be a LOC_DTYPE structured array; missing fields {missing}."
        )
    out = np.zeros(locs.shape, dtype=LOC_DTYPE)
    for name in LOC_DTYPE.names or ():
        out[name] = locs[name]
    return out
