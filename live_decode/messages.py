"""Shared vocabulary of the data flow: the localization table (DESIGN.md §4).

Localizations travel and are stored as a NumPy structured array with :data:`LOC_DTYPE`:
frame (0-based), x/y/z in nm (x = column, pixel j covers [j, j+1) px), photons, background
(photons/px), detection probability, and the predicted uncertainties.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

LOC_DTYPE = np.dtype(
    [
        ("frame", "<i8"),
        ("x_nm", "<f4"),
        ("y_nm", "<f4"),
        ("z_nm", "<f4"),
        ("photons", "<f4"),
        ("bg", "<f4"),
        ("prob", "<f4"),
        ("sigma_x_nm", "<f4"),
        ("sigma_y_nm", "<f4"),
        ("sigma_z_nm", "<f4"),
        ("sigma_photons", "<f4"),
    ]
)

Localizations = npt.NDArray[np.void]


def empty_locs(n: int = 0) -> Localizations:
    """A zero-filled localization table of ``n`` rows."""
    return np.zeros(n, dtype=LOC_DTYPE)
