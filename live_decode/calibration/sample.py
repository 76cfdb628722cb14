"""The sample and its photophysics from the spots of a movie: photons, on-time, background, density.

- Photons per full frame of on-time (the simulator's flux): spots seen in the frame before *and*
  after were on for the whole exposure, so their fitted photons are the flux, not a fraction.
- On-time: spots are linked frame to frame (nearest within ``LINK_PX``); an emitter on for an
  exponential time τ with a random start touches τ + 1 frames on average.
- Background: per frame, the median background of the quarter of the field's tiles where the
  fewest spots were found (a filament or a cell's edge lights its tiles with emitters, and a low
  percentile of a tile full of emitters is emitter light, not background: on the EPFL bundled
  tubes the whole field's median said 3–5 photons/px where the empty corners show 0.5), when
  they are far sparser than the field (``STRUCTURED_RATIO``); the ratio of their spot density to
  the field's is kept, so that the bias of the estimate is measured on a simulation at *their*
  density. Spatially, the relative spread of the
  time-averaged map (the simulator's pattern has a relative σ of ``variation_fraction``·0.41).
- Density: detections per frame undercount at high density (overlapping spots merge, dim ones are
  missed). The undercount is measured, not guessed: windows simulated from the calibrated setup at
  known densities go through the same detector, and the movie's count is read off that curve.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

LINK_PX = 1.0
PATTERN_SIGMA_PER_FRACTION = math.sqrt(0.5 / 3.0)
"""Relative σ of the simulator's background pattern (mean of three unit cosines) per unit of
``variation_fraction``."""


@dataclass(frozen=True)
class SampleEstimate:
    """Photophysics and sample of a movie, in photons, frames and µm⁻²."""

    photons_mean: float
    photons_sigma: float
    n_full_frame_spots: int
    on_time_mean_frames: float
    background_photons: tuple[float, float]
    background_variation_fraction: float
    detected_per_um2: float
    detected_per_um2_p95: float
    background_density_ratio: float = 1.0
    """Spots per area in the tiles the background level is read from, over the field's."""
    background_pattern_sd: float | None = None
    """Structured samples: the σ (photons/px) of the sparse tiles' time-averaged level. Their
    low percentile sits below the background by the noise, so the relative pattern is taken
    against the corrected level (:meth:`variation_fraction`)."""

    def variation_fraction(self) -> float:
        """The simulator's ``variation_fraction`` of this (corrected) background."""
        if self.background_pattern_sd is None:
            return self.background_variation_fraction
        level = max(0.5 * sum(self.background_photons), 1e-9)
        return float(min(1.0, self.background_pattern_sd / level / PATTERN_SIGMA_PER_FRACTION))

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _links(spots: npt.NDArray[np.void]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """For each spot, the index of its partner in the previous / next frame (−1: none)."""
    prev = np.full(len(spots), -1, dtype=np.int64)
    nxt = np.full(len(spots), -1, dtype=np.int64)
    frames = spots["frame"]
    by_frame = {int(f): np.nonzero(frames == f)[0] for f in np.unique(frames)}
    for f, idx in by_frame.items():
        after = by_frame.get(f + 1)
        if after is None or len(after) == 0:
            continue
        xy_a = np.c_[spots["x_px"][idx], spots["y_px"][idx]]
        xy_b = np.c_[spots["x_px"][after], spots["y_px"][after]]
        d, j = cKDTree(xy_b).query(xy_a, distance_upper_bound=LINK_PX)
        hit = np.isfinite(d)
        nxt[idx[hit]] = after[j[hit]]
        prev[after[j[hit]]] = idx[hit]
    return prev, nxt


def _track_lengths(prev: npt.NDArray[np.int64], nxt: npt.NDArray[np.int64]) -> list[int]:
    lengths = []
    for start in np.nonzero(prev < 0)[0]:
        n, i = 1, int(start)
        while nxt[i] >= 0:
            i = int(nxt[i])
            n += 1
        lengths.append(n)
    return lengths


def estimate_sample(
    spots: npt.NDArray[np.void],
    bg_maps: npt.NDArray[np.float32],
    fov_area_um2: float,
    n_frames: int,
    tiles: npt.NDArray[np.float32] | None = None,
    tile_px: int = 8,
) -> SampleEstimate:
    """Photophysics and background from the spots (:data:`spots.SPOT_DTYPE`) of a movie.

    ``bg_maps`` (T, H, W) photons/px are the per-frame background maps the spots were found on;
    ``tiles`` (T, h, w) their tiles' levels (:func:`spots.tile_levels` of ``tile_px``): with
    them the level is read from the sparsest tiles (module docstring), else from the whole map.
    """
    prev, nxt = _links(spots)
    fitted = spots["ok"]
    full = fitted & (prev >= 0) & (nxt >= 0)
    # Too few emitters stay three frames: fall back on the brightest half of all fitted spots.
    pool = spots["photons"][full] if full.sum() >= 30 else None
    if pool is None:
        ph = spots["photons"][fitted]
        pool = ph[ph >= np.median(ph)] if len(ph) else np.array([np.nan])
    photons_mean = float(np.median(pool))
    q16, q84 = np.quantile(pool, [0.16, 0.84]) if len(pool) > 1 else (np.nan, np.nan)
    lengths = _track_lengths(prev, nxt)
    on_time = max(0.5, float(np.mean(lengths)) - 1.0) if lengths else 1.0
    level = np.median(bg_maps.reshape(len(bg_maps), -1), axis=1).astype(np.float64)
    density_ratio, pattern_sd = 1.0, None
    mean_map = bg_maps.mean(axis=0)
    rel_sd = float(mean_map.std() / max(float(mean_map.mean()), 1e-9))
    if tiles is not None:
        sparse_level, ratio, sparse_tiles = sparse_tile_level(spots, tiles, tile_px)
        if ratio < STRUCTURED_RATIO:
            # The pattern, too, of the sparse tiles alone: the structure is not background.
            level, density_ratio = sparse_level, ratio
            # Robust (1.4826·MAD): the sparsest quarter can include a tile a tube crosses.
            means = tiles.mean(axis=0).ravel()[sparse_tiles]
            pattern_sd = float(1.4826 * np.median(np.abs(means - np.median(means))))
    lo, hi = np.quantile(level, [0.05, 0.95])
    counts = np.bincount(spots["frame"], minlength=n_frames)[:n_frames]
    per_um2 = counts / fov_area_um2
    return SampleEstimate(
        photons_mean=photons_mean,
        photons_sigma=float(0.5 * (q84 - q16)),
        n_full_frame_spots=int(full.sum()),
        on_time_mean_frames=on_time,
        background_photons=(float(max(lo, 0.0)), float(max(hi, lo, 0.0))),
        background_variation_fraction=float(min(1.0, rel_sd / PATTERN_SIGMA_PER_FRACTION)),
        detected_per_um2=float(per_um2.mean()),
        detected_per_um2_p95=float(np.quantile(per_um2, 0.95)),
        background_density_ratio=density_ratio,
        background_pattern_sd=pattern_sd,
    )


SPARSE_TILE_SHARE = 0.25
"""Share of the tiles, those with the fewest spots, the background level is read from."""
STRUCTURED_RATIO = 0.5
"""Below this ratio of the sparsest tiles' spot density to the field's the sample counts as
structured and its background is read from those tiles; above it (uniform samples: 0.8–0.85 on
simulated movies, from chance alone) from the whole field, whose tiles' spots then do not select
the brighter part of a background pattern."""


def sparse_tile_level(
    spots: npt.NDArray[np.void], tiles: npt.NDArray[np.float32], tile_px: int
) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.int64]]:
    """Per-frame level (T,) of the sparsest tiles, their spot density over the field's, and
    their flat indices."""
    th, tw = tiles.shape[1:]
    row = np.clip((spots["y_px"] // tile_px).astype(np.int64), 0, th - 1)
    col = np.clip((spots["x_px"] // tile_px).astype(np.int64), 0, tw - 1)
    counts = np.bincount(row * tw + col, minlength=th * tw).astype(np.float64)
    n_keep = max(1, round(SPARSE_TILE_SHARE * th * tw))
    keep = np.argsort(counts, kind="stable")[:n_keep]
    level = np.median(tiles.reshape(len(tiles), -1)[:, keep], axis=1).astype(np.float64)
    ratio = float(counts[keep].mean() / counts.mean()) if counts.mean() > 0 else 1.0
    return level, ratio, keep


def invert_count_curve(
    true_per_um2: npt.NDArray[np.float64],
    detected_per_um2: npt.NDArray[np.float64],
    observed_per_um2: float,
) -> float:
    """The true density whose simulated detections equal ``observed_per_um2`` (interpolated).

    Beyond the simulated range the last segment is extrapolated, and a detector that saturates
    (detections no longer grow with density) gives the upper end of the range.
    """
    order = np.argsort(true_per_um2)
    t, d = true_per_um2[order], np.maximum.accumulate(detected_per_um2[order])
    if observed_per_um2 <= d[0]:
        return float(t[0] * observed_per_um2 / max(d[0], 1e-12))
    if observed_per_um2 >= d[-1]:
        slope = (d[-1] - d[-2]) / max(t[-1] - t[-2], 1e-12)
        if slope <= 1e-6:
            return float(t[-1])
        return float(t[-1] + (observed_per_um2 - d[-1]) / slope)
    return float(np.interp(observed_per_um2, d, t))
