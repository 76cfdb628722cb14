"""The camera from its own pixels: baseline, ADU per photon and read noise (photon transfer).

For a pixel that sees a steady expected signal of λ photo-electrons, the camera's output in ADU has

    mean = b + G·λ,        var = F²·G·(mean − b) + σ_r²,

with b the baseline, G the ADU per photo-electron, σ_r the read noise in ADU and F² the excess
noise factor (2 for an EMCCD at high EM gain, 1 for an sCMOS). The *photon-transfer curve*
(noise variance against signal level) is a straight line of slope a = F²·G and intercept
c = σ_r² − a·b. With a dark series b and σ_r are measured directly; without one
b = (σ_r² − c)/a, with σ_r the datasheet value the setup assumes (:data:`ASSUMED_READ_NOISE_E`;
its share is small: ~1 ADU for an EMCCD, a few ADU for an sCMOS).

The noise variance of a pixel is half the squared difference d of two consecutive frames (the
frame-wide median of d, a drifting background, removed), taken only where no emitter changed
between the two: an emitter that switches on or off adds its change squared, and at the bright
spots of SMLM even one switching emitter per frame biases the curve by tens of per cent. The
change is seen in the PSF-smoothed difference image, which gathers a spot's change over its
pixels; pixel pairs within ``MASK_RADIUS_PX`` of a change above ``CHANGE_SIGMAS`` of its noise
are left out. Two rules keep the rest unbiased:

- *leave one out*: a pixel is judged only by the pixels of the other checkerboard sublattice, so
  whether it is kept does not depend on its own noise (judging it with its own difference would
  drop its loud pairs and bias the variance low, −3 to −5 % on simulated movies);
- *noise from the model*: the threshold is the noise the current curve predicts at the pixel's
  level, not a spread measured on the (contaminated) differences; the first pass uses the
  quietest pixels' variance-to-level ratio, a lower bound of the slope, so the iteration starts
  strict and relaxes to its fixed point (starting from a measured spread, dense movies inflated
  the threshold, let changes through and ran away).

The level of a kept pair is its own mean; pairs are grouped by an instrument independent of
their noise (the mean of the 24 neighbours in a 5×5 box), as grouping by the pair's own mean
would correlate the groups with the noise (an EMCCD's skewed noise biases the slope). Background
(spatial pattern and drift) and steady emitters give the curve its lever arm.

Measured on simulated 64×64 px × 200 frame movies (``tests/unit/calibration``; mean ± sd of 3–6
seeds): ADU per photon EMCCD +0.4 ± 1 % without emitters, +2.6 ± 1 % at 1 emitter/µm²/frame,
+6–7 % at 3, +10 % at 5 (it was 2.5× at 4 before the mask); sCMOS +0 / +1 / +2–4 / +5 %. The
sCMOS baseline is within ~2 ADU (±4 at 3 µm⁻²). An EMCCD baseline is the curve extrapolated from
the background, hundreds of ADU above it, to zero signal: +3 ± 4 ADU without emitters, +9 ± 5 at
1 µm⁻², +6 ± 7 at 3 — about a photon; a dark series (``--dark``) gives it to < 1 ADU.

Without a dark series a second estimate needs no read noise: Gaussian read noise adds nothing to
the third cumulant, so κ₃ = :data:`SKEW_FACTOR`·a²·(mean − b) gives b from steady frame
triplets (:class:`SkewSamples`). Its error grows with the background above b (through the slope's
error and κ₃'s noise), so it decides where the background is a few photons — where the assumed
read noise is what the extrapolation gets wrong. The two are weighted by their errors where they
agree, and the one with the smaller error is used where they do not (a warning names both); where
the skew decides, the read noise is measured: σ_r² = c + a·b. Simulated 64×64 × 200 frames at 1–2
photons/px of background: EMCCD read noise 150 e⁻ (the datasheet 50 e⁻ assumed) −0.6 ADU and
σ_r within 1 %, where the extrapolation alone was −8.6; sCMOS 4 e⁻ −2.0 ADU (σ_r −2 %), where it
was −31. The EPFL 2013 movie: 136.2 ADU and σ_r 10.5 ADU (its empty corners' cumulants say the
same), where the extrapolation said 128.8.
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
NOMINAL_EM_GAIN = 100.0
"""EM gain written for an EMCCD whose file does not say: only gain / (e⁻/ADU) is identifiable,
and the simulation depends on that ratio alone."""
ASSUMED_READ_NOISE_E = {"emccd": 50.0, "scmos": 1.5}
"""Read noise written where it cannot be measured (no dark series): typical datasheet values;
negligible beside an EMCCD's gain, and ~1 photon²/px beside the background of an sCMOS."""
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
    baseline_sd_adu: float | None = None
    """Scatter of the extrapolated baseline (jackknife over blocks of frames; None with a dark
    series). A lower bound on its error: the extrapolation's bias comes on top."""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def read_var_photons(self) -> float:
        """Read-noise variance in photons² per pixel: measured, else the datasheet value the
        setup assumes (spot detection adds it to the shot noise: at a background of a few
        photons an EMCCD's read noise is as loud as the light)."""
        read_adu = self.read_noise_adu
        if read_adu is None:
            em_gain = NOMINAL_EM_GAIN if self.kind == "emccd" else 1.0
            f2 = EXCESS_NOISE_FACTOR_SQ[self.kind]
            read_adu = ASSUMED_READ_NOISE_E[self.kind] * self.slope_adu / f2 / em_gain
        return float((read_adu / self.adu_per_photon) ** 2)


JACKKNIFE_BLOCKS = 8
"""Blocks of consecutive frame pairs left out in turn for the baseline's scatter."""
BASELINE_SD_WARNING_ADU = 3.0
"""A baseline scatter above this is a warning that asks for a dark series."""


MAX_FRAMES = 400
"""Frames used at most (the statistics converge long before; bounded time and memory)."""
MAX_VALUES = 2**24
"""Values used at most: large frames use fewer frames (``MIN_FRAMES`` at least)."""
SMOOTH_PX = 1.0
"""σ of the Gaussian that gathers a spot's change over its pixels (about a PSF's σ)."""
CHANGE_SIGMAS = 2.5
MASK_RADIUS_PX = 3
"""Pairs within this radius of a smoothed change above ``CHANGE_SIGMAS`` of its noise are left
out (tuned on simulated movies: stricter masks keep too few pairs at 3 emitters/µm², looser ones
let dim changes bias the slope)."""
ITERATIONS = 6
LOW_DIFFERENCE_QUANTILE_Z = 0.12566134685507402
"""The 10 % quantile of |z| for a standard normal z (scipy.stats.norm.ppf(0.55))."""


def _disk(radius: int) -> npt.NDArray[np.bool_]:
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return np.asarray((yy * yy + xx * xx <= radius * radius + 0.5)[None])


def _changed(d: npt.NDArray[np.float64], var_d: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Pairs (T−1, H, W) near a change: each sublattice judged by the other one alone.

    ``d`` are the frame differences, ``var_d`` their noise variance (ADU², broadcastable).
    """
    h, w = d.shape[1:]
    parity = np.add.outer(np.arange(h), np.arange(w)) % 2
    out = np.empty(d.shape, dtype=bool)
    var_d = np.broadcast_to(var_d, d.shape)
    s_var = SMOOTH_PX / math.sqrt(2.0)
    for p in (0, 1):
        other = (parity != p).astype(np.float64)
        smooth = ndimage.gaussian_filter(d * other, (0, SMOOTH_PX, SMOOTH_PX), mode="reflect")
        # Noise variance of the weighted mean Σwᵢdᵢ/Σwᵢ: Σwᵢ²vᵢ/(Σwᵢ)², with w² a Gaussian of σ/√2.
        var_s = ndimage.gaussian_filter(var_d * other, (0, s_var, s_var), mode="reflect") / (
            4.0 * math.pi * SMOOTH_PX**2
        )
        z = np.abs(smooth) / np.sqrt(np.maximum(var_s, 1e-12))
        near = ndimage.binary_dilation(z > CHANGE_SIGMAS, structure=_disk(MASK_RADIUS_PX))
        out[:, parity == p] = near[:, parity == p]
    return out


@dataclass(frozen=True)
class SkewSamples:
    """Unbiased samples of the noise's third cumulant κ₃ at steady frame triplets.

    For a frame c between p and n (independent, same mean), ½(c−p)(c−n)((c−p)+(c−n)) has
    expectation κ₃ of c's noise, whatever the level or its drift: no per-pixel mean is needed.
    """

    level_adu: npt.NDArray[np.float64]  # the triplet's mean
    k3_adu3: npt.NDArray[np.float64]
    group_adu: npt.NDArray[np.float64]  # 24-neighbour mean: bins independent of the noise
    triplet_index: npt.NDArray[np.int64]


@dataclass(frozen=True)
class TransferCurve:
    """The photon-transfer curve of a movie: its kept pairs, binned, and the line through them."""

    level_adu: npt.NDArray[np.float64]
    var_adu2: npt.NDArray[np.float64]
    bin_level_adu: npt.NDArray[np.float64]
    bin_var_adu2: npt.NDArray[np.float64]
    bin_count: npt.NDArray[np.float64]
    slope_adu: float
    intercept_adu2: float
    kept_fraction: float
    group_adu: npt.NDArray[np.float64] | None = None  # the level the bins are quantiles of
    pair_index: npt.NDArray[np.int64] | None = None  # which frame pair each kept value is from
    skew: SkewSamples | None = None  # third-cumulant samples of the kept frame triplets


def _fit_line(
    level: npt.NDArray[np.float64], var: npt.NDArray[np.float64], group: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], ...]:
    """Bins of ``group`` quantiles: mean level, mean variance, count; and the weighted line."""
    if len(level) < 50 * N_BINS:
        raise CalibrationError(
            "too few steady pixels to fit the photon-transfer curve (the sample blinks too "
            "densely, or the movie is too short): record more frames at a lower 405 nm power, "
            "or pass --dark with a dark series"
        )
    edges = np.quantile(group, np.linspace(0.0, 1.0, N_BINS + 1))
    which = np.clip(np.searchsorted(edges, group, side="right") - 1, 0, N_BINS - 1)
    count = np.bincount(which, minlength=N_BINS).astype(np.float64)
    bm = np.bincount(which, weights=level, minlength=N_BINS) / np.maximum(count, 1.0)
    bv = np.bincount(which, weights=var, minlength=N_BINS) / np.maximum(count, 1.0)
    ok = count >= 20
    bm, bv, count = bm[ok], bv[ok], count[ok]
    if len(bm) < 4 or bm.max() - bm.min() <= 0:
        raise CalibrationError(
            "too few distinct signal levels in the movie to fit the photon-transfer curve; "
            "record more frames, or pass --dark with a dark series"
        )
    # Weights: the standard error of a bin's mean variance is ∝ its variance / √count.
    weights = np.sqrt(count) / np.maximum(bv, 1e-9)
    slope, intercept = np.polyfit(bm, bv, 1, w=weights)
    return bm, bv, count, np.array([slope, intercept])


def transfer_curve(movie: npt.NDArray[np.generic]) -> TransferCurve:
    """The photon-transfer curve of the pairs of consecutive frames where nothing changed."""
    t_max = max(MIN_FRAMES, min(MAX_FRAMES, MAX_VALUES // max(movie.shape[1] * movie.shape[2], 1)))
    x = np.asarray(movie[:t_max], dtype=np.float64)
    d = np.diff(x, axis=0)
    d -= np.median(d.reshape(len(d), -1), axis=1)[:, None, None]  # the background's drift
    level = 0.5 * (x[1:] + x[:-1])
    var = 0.5 * d * d
    group = (ndimage.uniform_filter(level, size=(1, 5, 5), mode="reflect") * 25.0 - level) / 24.0
    pixel_level = np.median(x, axis=0)
    # Start strict: variance per ADU of level bounds the slope below (b ≥ 0), and the smallest
    # tenth of a pixel's differences are those least touched by emitters (|z| < 0.1257 for 10 %
    # of a normal's draws).
    pixel_var = 0.5 * np.square(np.quantile(np.abs(d), 0.1, axis=0) / LOW_DIFFERENCE_QUANTILE_Z)
    slope = float(np.median(pixel_var / np.maximum(pixel_level, 1.0)))
    intercept = 0.0
    for _ in range(ITERATIONS):
        var_d = 2.0 * np.maximum(slope * pixel_level + intercept, 1.0)
        keep = ~_changed(d, var_d)
        bm, bv, count, (new_slope, intercept) = _fit_line(level[keep], var[keep], group[keep])
        converged = abs(new_slope - slope) < 1e-3 * abs(new_slope)
        slope = float(new_slope)
        if converged:
            break
    pair = np.broadcast_to(np.arange(len(d), dtype=np.int64)[:, None, None], d.shape)
    return TransferCurve(
        skew=_skew_samples(x, d, keep),
        level_adu=level[keep],
        var_adu2=var[keep],
        bin_level_adu=bm,
        bin_var_adu2=bv,
        bin_count=count,
        slope_adu=slope,
        intercept_adu2=float(intercept),
        kept_fraction=float(keep.mean()),
        group_adu=group[keep],
        pair_index=pair[keep],
    )


def _skew_samples(
    x: npt.NDArray[np.float64], d: npt.NDArray[np.float64], keep: npt.NDArray[np.bool_]
) -> SkewSamples:
    """κ₃ samples of the triplets (t−1, t, t+1) whose two pairs were both kept."""
    both = keep[:-1] & keep[1:]
    d1, d2 = d[:-1], -d[1:]  # c − p and c − n (drift removed with the pairs')
    k3 = 0.5 * d1 * d2 * (d1 + d2)
    level = (x[:-2] + x[1:-1] + x[2:]) / 3.0
    group = (ndimage.uniform_filter(level, size=(1, 5, 5), mode="reflect") * 25.0 - level) / 24.0
    index = np.broadcast_to(np.arange(len(k3), dtype=np.int64)[:, None, None], k3.shape)
    return SkewSamples(level[both], k3[both], group[both], index[both])


def baseline_scatter(curve: TransferCurve, read_var_adu2: float) -> float | None:
    """Jackknife σ (ADU) of the extrapolated baseline over :data:`JACKKNIFE_BLOCKS` blocks of
    consecutive frame pairs (None if the curve cannot be refitted without a block)."""
    if curve.group_adu is None or curve.pair_index is None:
        return None
    block = curve.pair_index * JACKKNIFE_BLOCKS // (int(curve.pair_index.max()) + 1)
    estimates = []
    for k in range(JACKKNIFE_BLOCKS):
        rest = block != k
        try:
            *_, (slope, intercept) = _fit_line(
                curve.level_adu[rest], curve.var_adu2[rest], curve.group_adu[rest]
            )
        except CalibrationError:
            return None
        if slope <= 0:
            return None
        read_var = read_var_adu2 * (slope / curve.slope_adu) ** 2  # σ_r(e⁻) fixed: ∝ G²
        estimates.append((read_var - intercept) / slope)
    b = np.asarray(estimates)
    n = len(b)
    return float(math.sqrt((n - 1) / n * float(np.sum((b - b.mean()) ** 2))))


SKEW_FACTOR: dict[str, float] = {"emccd": 1.5, "scmos": 1.0}
"""κ₃ = SKEW_FACTOR·a²·(mean − b), a the transfer curve's slope: an EMCCD's gamma-distributed
multiplication gives κ₃ = 6λg³ with a = 2g; Poisson light on an sCMOS κ₃ = λG³ with a = G.
Gaussian read noise adds nothing to κ₃, so the baseline follows without assuming it."""
SKEW_GAIN_ERROR = 0.05
"""Relative error of the slope counted in the skew baseline's error (b moves by 2× that, times
the background above b: negligible at a few photons of background, ruinous at tens)."""
SKEW_BINS = 12
READ_NOISE_FACTOR: dict[str, float] = {"emccd": 2.0, "scmos": 1.5}
"""How far (×, ÷) a camera's read noise may be from the datasheet value assumed without a dark
series: the extrapolated baseline's error counts it (EMCCD read noise varies with readout speed
and preamp; an sCMOS's is known better)."""


@dataclass(frozen=True)
class SkewBaseline:
    baseline_adu: float
    error_adu: float
    """Jackknife scatter and the slope's share (:data:`SKEW_GAIN_ERROR`) together."""
    level_adu: float


def _skew_estimate(
    skew: SkewSamples, rest: npt.NDArray[np.bool_], factor: float
) -> tuple[float, float] | None:
    level, k3, group = skew.level_adu[rest], skew.k3_adu3[rest], skew.group_adu[rest]
    if len(level) < 50 * SKEW_BINS:
        return None
    edges = np.quantile(group, np.linspace(0.0, 1.0, SKEW_BINS + 1))
    which = np.clip(np.searchsorted(edges, group, side="right") - 1, 0, SKEW_BINS - 1)
    count = np.bincount(which, minlength=SKEW_BINS).astype(np.float64)
    ok = count >= 20
    n = np.maximum(count, 1.0)
    m = np.bincount(which, weights=level, minlength=SKEW_BINS) / n
    k = np.bincount(which, weights=k3, minlength=SKEW_BINS) / n
    k_sq = np.bincount(which, weights=k3 * k3, minlength=SKEW_BINS) / n
    se2 = np.maximum(k_sq - k * k, 1e-12) / n
    w = ok / (se2 * factor * factor)
    b = m - k / factor
    return float(np.sum(w * b) / np.sum(w)), float(np.sum(w * m) / np.sum(w))


def skew_baseline(curve: TransferCurve, kind: CameraKind) -> SkewBaseline | None:
    """The baseline from the noise's third cumulant (no read-noise assumption), with its error;
    None where too few triplets were kept."""
    skew = curve.skew
    if skew is None or len(skew.level_adu) == 0:
        return None
    factor = SKEW_FACTOR[kind] * curve.slope_adu**2
    everything = np.ones(len(skew.level_adu), dtype=bool)
    full = _skew_estimate(skew, everything, factor)
    if full is None:
        return None
    baseline, level = full
    block = skew.triplet_index * JACKKNIFE_BLOCKS // (int(skew.triplet_index.max()) + 1)
    estimates = []
    for j in range(JACKKNIFE_BLOCKS):
        part = _skew_estimate(skew, block != j, factor)
        if part is None:
            return None
        estimates.append(part[0])
    b = np.asarray(estimates)
    jack = math.sqrt((len(b) - 1) / len(b) * float(np.sum((b - b.mean()) ** 2)))
    error = math.hypot(jack, 2.0 * SKEW_GAIN_ERROR * max(level - baseline, 0.0))
    return SkewBaseline(baseline_adu=baseline, error_adu=error, level_adu=level)


def transfer_pairs(
    movie: npt.NDArray[np.generic],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Signal level (ADU) and noise variance (ADU²) of the steady frame pairs of every pixel."""
    curve = transfer_curve(movie)
    return curve.level_adu, curve.var_adu2


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
    curve = transfer_curve(movie)
    bm, bv, count = curve.bin_level_adu, curve.bin_var_adu2, curve.bin_count
    slope, intercept = curve.slope_adu, curve.intercept_adu2
    spread = float(bm.max() - bm.min())
    if slope <= 0 or not math.isfinite(slope):
        raise CalibrationError(
            "the pixel variance does not grow with the signal: this does not look like raw "
            "camera data (was it background-subtracted or converted?)"
        )

    f2 = EXCESS_NOISE_FACTOR_SQ[kind]

    baseline_sd: float | None = None
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
        weights = np.sqrt(count) / np.maximum(bv, 1e-9)
        dm, dv = bm - baseline, bv - read_noise**2
        slope = float(np.sum(weights**2 * dv * dm) / np.sum(weights**2 * dm * dm))
    else:
        # σ_r (ADU) = σ_r(e⁻)·G/EM gain, G = slope/F²: the datasheet read noise the setup assumes.
        em_gain = NOMINAL_EM_GAIN if kind == "emccd" else 1.0
        assumed_read_var = (ASSUMED_READ_NOISE_E[kind] * slope / f2 / em_gain) ** 2
        baseline = (assumed_read_var - intercept) / slope
        read_noise = None
        baseline_source = "photon-transfer intercept"
        baseline_sd = baseline_scatter(curve, assumed_read_var)
        skew = skew_baseline(curve, kind)
        if skew is not None and baseline_sd is not None:
            # Two estimates, weighted by their errors where they agree: the extrapolation's
            # error counts the datasheet read noise being off by READ_NOISE_FACTOR, the skew's
            # the slope's error.
            k = READ_NOISE_FACTOR[kind]
            error2 = math.hypot(baseline_sd, (k * k - 1.0) * assumed_read_var / slope)
            w3 = error2**2 / (error2**2 + skew.error_adu**2)
            if abs(skew.baseline_adu - baseline) > 3.0 * math.hypot(error2, skew.error_adu):
                # They disagree beyond their errors: one error model is wrong; trust the smaller.
                w3 = 1.0 if skew.error_adu < error2 else 0.0
                warnings.append(
                    f"the noise's skew puts the baseline at {skew.baseline_adu:.1f} ADU "
                    f"(±{skew.error_adu:.1f}), a datasheet read noise of "
                    f"{ASSUMED_READ_NOISE_E[kind]:g} e⁻ at {baseline:.1f} ADU (±{error2:.1f}): "
                    f"the {'skew' if w3 else 'datasheet'} value is used; a dark series (--dark) "
                    "measures the baseline and the read noise directly"
                )
            mixed = (1.0 - w3) * baseline + w3 * skew.baseline_adu
            read_var = intercept + slope * mixed
            if w3 >= 0.5 and read_var > 0:
                read_noise = math.sqrt(read_var)
                baseline_source = "third cumulant of the noise (and photon-transfer intercept)"
            baseline = mixed
            baseline_sd = math.hypot((1.0 - w3) * baseline_sd, w3 * skew.error_adu)
        if baseline_sd is not None and baseline_sd > BASELINE_SD_WARNING_ADU:
            warnings.append(
                f"the baseline {baseline:.1f} ADU is extrapolated from a background "
                f"{float(bm.min()) - baseline:.0f} ADU above it and scatters by ±{baseline_sd:.1f} "
                f"ADU between blocks of frames (its error can be larger): pass --dark with a dark "
                "series (≥ 50 frames with the shutter closed, same exposure and gain) to measure it"
            )
        if spread < 0.1 * max(float(bm.min()) - baseline, 1.0):
            warnings.append(
                f"the background spans only {spread:.1f} ADU: the baseline extrapolation is "
                "uncertain; a dark series (--dark) fixes it"
            )
    g = slope / f2  # ADU per photo-electron
    adu_per_photon = g * qe
    low = float(np.quantile(curve.level_adu, 0.01))
    if low < baseline - 3.0 * math.sqrt(max(float(bv.min()), 1.0)):
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
        mean_range_adu=(float(bm.min()), float(bm.max())),
        n_samples=len(curve.level_adu),
        baseline_source=baseline_source,
        warnings=warnings,
        baseline_sd_adu=baseline_sd,
    )


def to_photons(movie: npt.NDArray[np.generic], cam: CameraEstimate) -> npt.NDArray[np.float32]:
    """(T, H, W) ADU → expected photons per pixel, with the estimated baseline and gain."""
    return ((np.asarray(movie, dtype=np.float32) - cam.baseline_adu) / cam.adu_per_photon).astype(
        np.float32
    )
