"""Localizations simulated directly (no frames): blinking fluorophores with a known precision.

Each of ``n_fluorophores`` fixed positions switches on with probability ``p_on`` per frame and
stays on for an exponential number of frames (mean ``on_frames``); every on frame gives one
localization at the true position + stage drift + N(0, precision²) in x and y.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from live_decode.messages import Localizations, empty_locs


def simulate_locs(
    n_frames: int,
    *,
    fov_nm: float = 6400.0,
    n_fluorophores: int = 400,
    p_on: float = 0.01,
    on_frames: float = 3.0,
    precision_nm: float = 12.0,
    drift_nm: npt.NDArray[np.float64] | None = None,
    error_window_frames: int = 1,
    seed: int = 0,
) -> Localizations:
    """(N,) LOC_DTYPE rows in frame order; ``drift_nm`` is (n_frames, 2) as (dx, dy) or None.

    ``error_window_frames`` > 1 makes a fluorophore's errors in nearby frames correlated, as a
    network with temporal context makes them: the error of frame t is the normalised sum of
    independent noise of frames t − w//2 .. t + w//2 (same variance, precision_nm²).
    """
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0.05 * fov_nm, 0.95 * fov_nm, size=(n_fluorophores, 2))
    remaining = np.zeros(n_fluorophores)  # on-frames left
    frames, idx = [], []
    p_stop = 1.0 / on_frames
    for t in range(n_frames):
        off = remaining <= 0
        remaining[off & (rng.random(n_fluorophores) < p_on)] = 1.0
        on = np.flatnonzero(remaining > 0)
        frames.append(np.full(on.size, t))
        idx.append(on)
        # Geometric on-times with mean on_frames.
        remaining[on] = np.where(rng.random(on.size) < p_stop, 0.0, 1.0)
    f = np.concatenate(frames)
    i = np.concatenate(idx)
    locs = empty_locs(f.size)
    locs["frame"] = f
    if error_window_frames == 1:
        err = rng.normal(0.0, precision_nm, size=(f.size, 2))
    else:
        half = error_window_frames // 2
        noise = rng.normal(0.0, precision_nm, size=(n_fluorophores, n_frames + 2 * half, 2))
        err = sum(noise[i, f + k] for k in range(error_window_frames))
        err = err / np.sqrt(error_window_frames)
    xy = pos[i] + err
    if drift_nm is not None:
        xy += drift_nm[f]
    locs["x_nm"], locs["y_nm"] = xy[:, 0], xy[:, 1]
    locs["photons"] = 3000.0
    locs["sigma_x_nm"] = locs["sigma_y_nm"] = precision_nm
    return locs
