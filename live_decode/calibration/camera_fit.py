"""The camera from its own pixels: baseline, ADU per photon and read noise (photon transfer).

For a pixel that sees a steady expected signal of λ photo-electrons, the camera's output in ADU has

    mean = b + G·λ,        var = F²·G·(mean − b) + σ_r²,

with b the baseline, G the ADU per photo-electron, σ_r the read noise in ADU and F² the excess
noise factor (2 for an EMCCD at high EM gain, 1 for an sCMOS). The *photon-transfer curve*
(noise variance against signal level) is a straight line of slope a = F²·G and intercept
c = σ_r² − a·b; with a dark series b and σ_r are measured directly, without one
b = (σ_r² − c)/a ≈ −c/a, as σ_r² ≪ a·b for both camera kinds.

The noise variance of a pixel is half the squared difference of two consecutive frames, taken
only where the signal was *steady* — the pixel's 24 neighbours (a 5×5 box without the pixel) did
not change between the two frames beyond their noise, so no emitter switched on or off. The
level is the neighbours' mean where they sit at their background (independent of the pixel's own
noise, so skewed EMCCD noise does not bias the curve) and the pair's own mean where a steady
emitter raises it (the emitters give the curve its lever arm). Emitters that change by less than
the neighbours' noise still leak in: the estimate holds to a few per cent up to ~1 emitter/µm²
and degrades above that (see ``tests/unit/calibration``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from live_decode.errors import CalibrationError

log = logging.getLogger("live_decode.calibration.camera_fit")

CameraKind = Literal["emccd", "scmos"]
EXCESS_NOISE_FACTOR_SQ: dict[str, float] = {"emccd": 2.0, "scmos": 1.0}
MIN_FRAMES = 20
N_BINS = 24


@dataclass(frozen=True)
class CameraEstimate:
    """What the pixels say about the camera (all in ADU unless named otherwise)."""

    kind: CameraKind
    baseline_adu: float
    adu_per_photon: float
    read_noise_adu: float | None
    slope_adu: float
    intercept_adu2: float
    mean_range_adu: tuple[float, float]
    n_samples: int
    baseline_source: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


STEADY_SIGMAS = 1.0
"""A pair of frames is steady where the neighbours' mean changed by less than this many of its
own noise σ (robust, per pixel)."""
MAX_FRAMES = 400
"""Frames used at most (the statistics converge long before; bounded time and memory)."""


def _robust_sigma(x: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.float64]:
    """σ from the median absolute deviation (normal consistency)."""
    med = np.median(x, axis=axis, keepdims=True)
    return np.asarray(np.median(np.abs(x - med), axis=axis) / 0.6744897501960817)


def transfer_pairs(
    movie: npt.NDArray[np.generic],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Signal level (ADU) and noise variance (ADU²) of the steady frame pairs of every pixel."""
    x = np.asarray(movie[:MAX_FRAMES], dtype=np.float64)
    ring = (ndimage.uniform_filter(x, size=(1, 5, 5), mode="reflect") * 25.0 - x) / 24.0
    quiet = ring < np.median(ring, axis=0) + STEADY_SIGMAS * _robust_sigma(ring, axis=0)
    d_ring = np.diff(ring, axis=0)
    steady = np.abs(d_ring) < STEADY_SIGMAS * _robust_sigma(d_ring, axis=0)
    background = quiet[1:] & quiet[:-1] & steady
    level = np.where(background, 0.5 * (ring[1:] + ring[:-1]), 0.5 * (x[1:] + x[:-1]))
    var = 0.5 * np.square(np.diff(x, axis=0))
    return level[steady], var[steady]


SATURATED_ERROR = 0.01
SATURATED_WARNING = 1e-4
"""Shares of pixels at the camera's ceiling refused / warned about (bright spots clip first)."""
MIN_PILE_UP = 20
"""Pixels that must share the movie's highest value before it counts as a ceiling (a 12- or
14-bit camera written as 16-bit TIFF saturates below 65535)."""


def _check_usable(movie: npt.NDArray[np.generic], max_adu: int | None) -> list[str]:
    """Refuse movies without usable photon statistics; return warnings for marginal ones."""
    values = np.asarray(movie[: min(len(movie), 200)])
    if not np.all(np.isfinite(values)):
        raise CalibrationError("the movie has NaN or infinite pixels: it is not raw camera data")
    if float(values.std()) == 0.0:
        raise CalibrationError(
            "the movie is a constant image: it carries no photon statistics; record raw frames "
            "with the sample in view"
        )
    top = int(max_adu) if max_adu is not None else int(np.iinfo(np.uint16).max)
    where = f"the camera's maximum ({top} ADU)"
    at_top = int(np.count_nonzero(values >= top))
    highest = float(values.max())
    if at_top == 0 and highest < top:
        at_highest = int(np.count_nonzero(values == highest))
        if at_highest >= MIN_PILE_UP:  # a ceiling below the file type's: the ADC's
            at_top, where = at_highest, f"the movie's highest value ({highest:g} ADU)"
    saturated = at_top / values.size
    if saturated > SATURATED_ERROR:
        raise CalibrationError(
            f"{saturated:.1%} of the pixels sit at {where}: the camera is saturated; lower the "
            "EM gain or the exposure and record again"
        )
    if saturated > SATURATED_WARNING and at_top >= MIN_PILE_UP:
        return [
            f"{at_top} pixels ({saturated:.2%}) sit at {where}: the brightest spots clip, so "
            "their photons come out low; lower the EM gain or the exposure for a better setup"
        ]
    return []


def _dark_statistics(
    dark: npt.NDArray[np.generic], frame_shape: tuple[int, ...]
) -> tuple[float, float]:
    """Baseline and read noise (ADU) from a dark series (T, H, W) of the movie's frame size."""
    if dark.ndim != 3:
        raise CalibrationError(f"the dark series must be a (T, H, W) stack, got shape {dark.shape}")
    if tuple(dark.shape[1:]) != tuple(frame_shape):
        raise CalibrationError(
            f"the dark series has frames of {dark.shape[1]}×{dark.shape[2]} px but the movie "
            f"{frame_shape[0]}×{frame_shape[1]}: record the dark series with the same camera "
            "region (ROI) and binning"
        )
    if dark.shape[0] < 2:
        raise CalibrationError("the dark series needs at least 2 frames (better ≥ 50)")
    d = np.asarray(dark, dtype=np.float64)
    baseline = float(np.median(d))
    read_var = float(np.median(d.var(axis=0, ddof=1)))
    return baseline, math.sqrt(max(read_var, 0.0))


def estimate_camera(
    movie: npt.NDArray[np.generic],
    kind: CameraKind,
    dark: npt.NDArray[np.generic] | None = None,
    qe: float = 1.0,
    max_adu: int | None = None,
) -> CameraEstimate:
    """Estimate the camera of a raw movie from its photon-transfer curve.

    Parameters
    ----------
    movie : (T, H, W) ADU
        Raw frames as the camera wrote them (no background subtraction, no flat field).
    kind : 'emccd' | 'scmos'
        The camera type (from the file's metadata or the user): it sets the excess noise factor,
        which the pixels alone cannot tell from the gain.
    dark : (T', H, W) ADU, optional
        Frames with the shutter closed: baseline and read noise measured directly.
    qe : float
        Quantum efficiency, where known: ADU per photon = G·qe. With qe = 1 the "photons" of the
        resulting setup are detected photo-electrons.

    Raises
    ------
    CalibrationError
        Too short, constant, saturated or non-finite movies, a dark series of another size, and
        movies whose pixels span too small a range of signal to separate baseline from gain.
    """
    if movie.ndim != 3:
        raise CalibrationError(f"a movie is a (T, H, W) stack, got shape {movie.shape}")
    warnings = _check_usable(movie, max_adu)
    if movie.shape[0] < MIN_FRAMES:
        raise CalibrationError(
            f"the movie has {movie.shape[0]} frames; calibrating the camera needs at least "
            f"{MIN_FRAMES}: record a longer movie (a few hundred frames)"
        )
    m, v = transfer_pairs(movie)
    if len(m) < 50 * N_BINS:
        raise CalibrationError(
            "too few steady pixels to fit the photon-transfer curve (the sample blinks too "
            "densely, or the movie is too short): record more frames at a lower 405 nm power, "
            "or pass --dark with a dark series"
        )
    lo, hi = np.quantile(m, [0.005, 0.999])
    keep = (m >= lo) & (m <= hi)
    m, v = m[keep], v[keep]
    edges = np.quantile(m, np.linspace(0.0, 1.0, N_BINS + 1))
    which = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, N_BINS - 1)
    count = np.bincount(which, minlength=N_BINS).astype(np.float64)
    bm = np.bincount(which, weights=m, minlength=N_BINS) / np.maximum(count, 1.0)
    bv = np.bincount(which, weights=v, minlength=N_BINS) / np.maximum(count, 1.0)
    ok = count >= 20
    bm, bv, count = bm[ok], bv[ok], count[ok]
    if len(bm) < 4 or bm[-1] - bm[0] <= 0:
        raise CalibrationError(
            "too few distinct signal levels in the movie to fit the photon-transfer curve; "
            "record more frames, or pass --dark with a dark series"
        )
    # Weights: the standard error of a bin's mean variance is ∝ its variance / √count.
    weights = np.sqrt(count) / np.maximum(bv, 1e-9)
    slope, intercept = (float(c) for c in np.polyfit(bm, bv, 1, w=weights))
    spread = float(bm[-1] - bm[0])
    if slope <= 0 or not math.isfinite(slope):
        raise CalibrationError(
            "the pixel variance does not grow with the signal: this does not look like raw "
            "camera data (was it background-subtracted or converted?)"
        )

    f2 = EXCESS_NOISE_FACTOR_SQ[kind]

    if dark is not None:
        baseline, read_noise = _dark_statistics(dark, movie.shape[1:])
        movie_median = float(np.median(np.asarray(movie[: min(len(movie), 200)])))
        if baseline >= movie_median:
            raise CalibrationError(
                f"the dark series (median {baseline:g} ADU) is as bright as the movie (median "
                f"{movie_median:g} ADU): it is not dark; record it with the shutter closed (or "
                "the lasers off and the objective covered), same exposure and gain"
            )
        baseline_source = "dark series"
        # The line through the dark point (b, σ_r²): only the slope is left to fit.
        dm, dv = bm - baseline, bv - read_noise**2
        slope = float(np.sum(weights**2 * dv * dm) / np.sum(weights**2 * dm * dm))
    else:
        # σ_r² ≪ a·b (an EMCCD's read noise is a few ADU², a·b thousands).
        baseline = -intercept / slope
        read_noise = None
        baseline_source = "photon-transfer intercept"
        if spread < 0.1 * max(bm[0] - baseline, 1.0):
            warnings.append(
                f"the background spans only {spread:.1f} ADU: the baseline extrapolation is "
                "uncertain; a dark series (--dark) fixes it"
            )
    g = slope / f2  # ADU per photo-electron
    adu_per_photon = g * qe
    if float(np.quantile(m, 0.01)) < baseline - 3.0 * math.sqrt(max(bv[0], 1.0)):
        warnings.append(
            f"many pixels read below the estimated baseline {baseline:.1f} ADU: check the "
            "camera settings or pass --dark"
        )
    return CameraEstimate(
        kind=kind,
        baseline_adu=float(baseline),
        adu_per_photon=float(adu_per_photon),
        read_noise_adu=read_noise,
        slope_adu=float(slope),
        intercept_adu2=float(intercept),
        mean_range_adu=(float(bm[0]), float(bm[-1])),
        n_samples=len(m),
        baseline_source=baseline_source,
        warnings=warnings,
    )


def to_photons(movie: npt.NDArray[np.generic], cam: CameraEstimate) -> npt.NDArray[np.float32]:
    """(T, H, W) ADU → expected photons per pixel, with the estimated baseline and gain."""
    return ((np.asarray(movie, dtype=np.float32) - cam.baseline_adu) / cam.adu_per_photon).astype(
        np.float32
    )
