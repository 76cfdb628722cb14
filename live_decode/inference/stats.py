"""Per-frame statistics the worker publishes with each batch of localizations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from live_decode.config import area_um2
from live_decode.messages import FrameStats, Localizations


def frame_stats(
    locs: Localizations, frames: Sequence[int], shape_px: tuple[int, int], pixel_size_nm: float
) -> list[FrameStats]:
    """Stats of each frame index in ``frames``, in that order (frames without rows count 0).

    Density is localizations per µm² of field of view per frame; means are NaN with no rows.
    """
    area = area_um2(shape_px, pixel_size_nm)
    order = np.argsort(locs["frame"], kind="stable")
    sorted_frames = locs["frame"][order]
    out = []
    nan = float("nan")
    for index in frames:
        lo, hi = np.searchsorted(sorted_frames, [index, index + 1])
        sel = locs[order[lo:hi]]
        n = int(hi - lo)
        if n == 0:
            out.append(FrameStats(index, 0, 0.0, nan, nan, nan))
            continue
        sigma = float(np.mean((sel["sigma_x_nm"] + sel["sigma_y_nm"]) / 2.0))
        out.append(
            FrameStats(
                index, n, n / area, float(sel["photons"].mean()), float(sel["bg"].mean()), sigma
            )
        )
    return out
