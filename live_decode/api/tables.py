"""Localization and ground-truth tables as pandas DataFrames (and back to structured arrays)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from live_decode.messages import LOC_DTYPE, Localizations

if TYPE_CHECKING:
    import pandas as pd

LOC_COLUMNS: tuple[str, ...] = tuple(LOC_DTYPE.names or ())
"""Columns of a localization table: ``frame`` (int64, 0-based), ``x_nm``, ``y_nm``, ``z_nm``,
``photons``, ``bg`` (photons/px), ``prob``, ``sigma_x_nm``, ``sigma_y_nm``, ``sigma_z_nm``,
``sigma_photons`` (float32). x is the column, y the row; pixel (row i, col j) covers
x ∈ [j, j+1) px."""

TableLike = Any
"""A pandas DataFrame or a NumPy structured array with (at least) the named columns."""


def locs_to_frame(locs: Localizations) -> pd.DataFrame:
    """A structured localization array as a DataFrame with :data:`LOC_COLUMNS` (copied)."""
    import pandas as pd

    return pd.DataFrame({name: np.array(locs[name]) for name in LOC_COLUMNS})


def structured_to_frame(table: npt.NDArray[np.void]) -> pd.DataFrame:
    """Any structured array (ground truth, localizations) as a DataFrame, column by column."""
    import pandas as pd

    return pd.DataFrame({name: np.array(table[name]) for name in table.dtype.names or ()})


def as_structured(table: TableLike, dtype: np.dtype[np.void], what: str) -> npt.NDArray[np.void]:
    """A DataFrame or structured array as an array of ``dtype``.

    Columns of ``dtype`` that ``table`` lacks are an error naming them; extra columns are
    dropped.
    """
    names = dtype.names or ()
    have = set(table.dtype.names or ()) if isinstance(table, np.ndarray) else set(table.columns)
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(
            f"the {what} table lacks the column(s) {', '.join(missing)}; it needs "
            f"{', '.join(names)}"
        )
    out = np.zeros(len(table), dtype=dtype)
    for name in names:
        out[name] = np.asarray(table[name])
    return out


def as_locs(table: TableLike) -> Localizations:
    """A localization DataFrame (or structured array) as the package's ``LOC_DTYPE`` array."""
    return as_structured(table, LOC_DTYPE, "localization")
