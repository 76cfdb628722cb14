"""Offline (batch) inference on a whole movie: the reference the streaming path must equal."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from live_decode.messages import CameraMeta, Localizations, empty_locs
from live_decode.model.seam import NetworkLocalizer


def localize_movie(
    localizer: NetworkLocalizer,
    movie: np.ndarray,
    cam: CameraMeta,
    batch_size: int = 16,
    on_batch: Callable[[int, int], None] | None = None,
    on_output: Callable[[torch.Tensor, np.ndarray], None] | None = None,
) -> Localizations:
    """Localize every frame of ``movie`` (T, H, W) ADU (memory-mapped is fine).

    Frame t sees (t−1, t, t+1) with indices clamped to [0, T−1] (edge frame replicated). Frames
    are read and passed through the frame U-Net once per chunk plus a one-frame halo.
    ``on_output(outputs, frame_indices)`` sees each chunk's network outputs (e.g. to collect a
    network's image tiles).
    """
    n = movie.shape[0]
    shape = (int(movie.shape[1]), int(movie.shape[2]))
    parts: list[Localizations] = []
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        lo, hi = max(0, start - 1), min(n, stop + 1)
        feats = localizer.features(localizer.to_input(np.asarray(movie[lo:hi]), cam))
        idx = torch.arange(start, stop)
        prev = (idx - 1).clamp(0, n - 1) - lo
        nxt = (idx + 1).clamp(0, n - 1) - lo
        cur = idx - lo
        out = localizer.outputs(feats[prev], feats[cur], feats[nxt], shape)
        parts.append(localizer.localize(out, idx.numpy()))
        if on_output is not None:
            on_output(out, idx.numpy())
        if on_batch is not None:
            on_batch(stop, n)
    return np.concatenate(parts) if parts else empty_locs()
