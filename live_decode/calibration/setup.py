"""``calibrate``: a complete setup (config) for a lab's microscope, from its own raw movie.

camera (photon transfer) → photons → spots (PSF σ, photons) → sample (on-time, background,
density corrected by simulation; above ~2 emitters/µm², where the detector saturates, on-time,
photons and density from the pixels' fluctuations) → ``setup.yaml`` + ``calibration.json`` +
``calibration.png``, with a check that movies simulated from the setup look like the real one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
import yaml
from scipy import stats

from live_decode.calibration.blinking import BlinkingEstimate, estimate_blinking
from live_decode.calibration.camera_fit import (
    ASSUMED_READ_NOISE_E,
    EXCESS_NOISE_FACTOR_SQ,
    NOMINAL_EM_GAIN,
    CameraEstimate,
    CameraKind,
    estimate_camera,
    to_photons,
)
from live_decode.calibration.fluctuations import FluctuationEstimate, estimate_fluctuations
from live_decode.calibration.sample import (
    SampleEstimate,
    estimate_sample,
    invert_count_curve,
    sparse_tile_level,
)
from live_decode.calibration.spots import (
    PixelNoise,
    background_maps,
    detect,
    find_spots,
    spread_tiles,
    tile_levels,
)
from live_decode.config import Config, StructuredSamplesConfig, area_um2, config_from_dict
from live_decode.errors import CalibrationError
from live_decode.io.calibration import Calibration, read_calibration
from live_decode.io.movie import TiffMovie
from live_decode.simulation.batch import WindowSimulator
from live_decode.strict_json import write_json

if TYPE_CHECKING:
    from live_decode.calibration.bead_calibration import BeadCalibration

log = logging.getLogger("live_decode.calibration.setup")

MAX_FRAMES = 1000
"""Frames read at most: the estimates converge well before (bounded time on a long movie)."""
MIN_FITTED_SPOTS = 30
LINKING_MIN_ON_TIME = 1.0
LINKING_MAX_DENSITY = 2.0
"""Where linking spots gives no on-time (sub-frame, or tracks broken by density), frames/µm⁻²."""
CHECK_FRAMES = 60
SHORT_MOVIE_FRAMES = 100
"""Fewer frames than this are calibrated, with a warning (fewer than 20 are refused)."""
DENSE_WARNING_PER_UM2 = 3.5
DENSE_LIMIT_PER_UM2 = 5.0
"""Emitters/µm²/frame beyond which the camera estimate is warned about / called unreliable
(:func:`_check_density`)."""
SIM_CROP_PX = 64
FLUCTUATION_ABOVE_PER_UM2 = 2.0
"""Above this (counted) density the spot detector saturates, and on-time, density and photons
come from the pixels' fluctuations (:mod:`~live_decode.calibration.fluctuations`)."""


@dataclass
class CalibrationResult:
    """What ``calibrate`` found, and the files it wrote."""

    config: Config
    camera: CameraEstimate
    sample: SampleEstimate
    psf_sigma_nm: tuple[float, float]
    density_per_um2: float
    distances: dict[str, float]
    sources: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    beads: BeadCalibration | None = None


def read_movies(
    paths: list[Path], max_frames: int = MAX_FRAMES
) -> tuple[npt.NDArray[np.generic], Calibration, str]:
    """Frames (T, H, W) of one or more TIFF movies (in order) and the first file's calibration."""
    frames: list[npt.NDArray[Any]] = []
    cal = Calibration()
    dtype = ""
    for i, path in enumerate(paths):
        movie = TiffMovie(Path(path))
        try:
            if i == 0:
                cal = read_calibration(movie.tif, movie.description)
                dtype = movie.dtype.name
            elif frames and movie.shape[1:] != frames[0].shape:
                raise CalibrationError(
                    f"{path}: frames of {movie.shape[1]}×{movie.shape[2]} px, but {paths[0]} has "
                    f"{frames[0].shape[0]}×{frames[0].shape[1]}: calibrate one camera ROI at a time"
                )
            take = min(len(movie), max_frames - len(frames))
            frames.extend(movie.frame(j) for j in range(take))
        finally:
            movie.close()
        if len(frames) >= max_frames:
            break
    return np.stack(frames), cal, dtype


def _kind(camera: str | None, cal: Calibration) -> tuple[CameraKind, str]:
    if camera is not None:
        if camera not in EXCESS_NOISE_FACTOR_SQ:
            raise CalibrationError(f"--camera must be emccd or scmos, not {camera!r}")
        return ("emccd" if camera == "emccd" else "scmos"), "given (--camera)"
    gain = cal.values.get("em_gain")
    if gain is not None:
        return ("emccd" if gain > 1.0 else "scmos"), f"{cal.sources['em_gain']} (EM gain {gain:g})"
    raise CalibrationError(
        "the file does not say which camera recorded it: pass --camera emccd or --camera scmos "
        "(an EMCCD's gain register doubles the noise variance, which the pixels alone cannot "
        "tell from a higher gain)"
    )


def _pixel_size(pixel_size_nm: float | None, cal: Calibration) -> tuple[float, str]:
    if pixel_size_nm is not None:
        return float(pixel_size_nm), "given (--pixel-size-nm)"
    if "pixel_size_nm" in cal.values:
        return cal.values["pixel_size_nm"], cal.sources["pixel_size_nm"]
    raise CalibrationError(
        "the file does not carry its pixel size: pass --pixel-size-nm (the camera pixel "
        "back-projected into the sample, e.g. 100 for a 16 µm pixel behind a 160× magnification)"
    )


def _check_density(density: float, warnings: list[str]) -> None:
    """Warn about a movie too dense for the photon-transfer camera estimate.

    Emitters that change by less than the noise of the smoothed frame difference escape the mask
    of :mod:`~live_decode.calibration.camera_fit` and bias the gain high; measured on simulated
    64×64 px × 200 frame movies (EMCCD / sCMOS, mean of 3–6 seeds): +3 / +1 % at 1
    emitter/µm²/frame, +6 / +2 % at 3, +7 / +2 % at 3.9, +10 / +5 % at 5, with a spread of a few
    per cent between movies. Dense movies are what DECODE is for, so this warns and goes on: the
    warning says how to get a camera estimate that holds.
    """
    sparser = (
        "record a sparser calibration movie (lower 405 nm power, or frames from late in an "
        "acquisition when most dyes have bleached), ≲ 3 emitters/µm²/frame, calibrate that and "
        "use its camera section"
    )
    if density > DENSE_LIMIT_PER_UM2:
        warnings.append(
            f"the movie is too dense for a reliable camera estimate: ≈{density:.1f} "
            f"emitters/µm²/frame, where photon transfer holds to ~3 (at {DENSE_LIMIT_PER_UM2:g} "
            f"the gain came out ~10 % high on simulated movies, beyond it more); check the "
            f"ADU per photon against the camera's datasheet, or {sparser}"
        )
    elif density > DENSE_WARNING_PER_UM2:
        warnings.append(
            f"the movie is dense for the camera estimate (≈{density:.1f} emitters/µm²/frame): "
            f"its ADU per photon may be 5–10 % high; for a better one {sparser}"
        )


def _compare_with_file(cam: CameraEstimate, cal: Calibration, warnings: list[str]) -> None:
    """Warn, naming both, where the file's own camera numbers disagree with the pixels."""
    v = cal.values
    if "baseline_adu" in v and abs(v["baseline_adu"] - cam.baseline_adu) > 5.0:
        warnings.append(
            f"baseline: the file says {v['baseline_adu']:g} ADU ({cal.sources['baseline_adu']}), "
            f"the pixels {cam.baseline_adu:.1f} ADU"
        )
    if "e_per_adu" in v:
        gain = v.get("em_gain", 1.0) if cam.kind == "emccd" else 1.0
        file_g = gain * v.get("qe", 1.0) / v["e_per_adu"]
        if abs(file_g / cam.adu_per_photon - 1.0) > 0.15:
            warnings.append(
                f"ADU per photon: the file's camera settings give {file_g:.3g} "
                f"({cal.sources['e_per_adu']}), the photon-transfer curve {cam.adu_per_photon:.3g}"
            )


def _camera_section(
    cam: CameraEstimate, pixel_size_nm: float, qe: float, cal: Calibration, max_adu: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """The config's camera section and where each value came from."""
    src: dict[str, str] = {"baseline_adu": cam.baseline_source, "adu_per_photon": "photon transfer"}
    if cam.kind == "emccd":
        em_gain = cal.values.get("em_gain", NOMINAL_EM_GAIN)
        src["em_gain"] = cal.sources.get(
            "em_gain", "nominal (only gain/e⁻ per ADU is identifiable)"
        )
    else:
        em_gain = 1.0
    e_per_adu = em_gain * qe / cam.adu_per_photon
    if cam.read_noise_adu is not None:
        read_noise_e = cam.read_noise_adu * e_per_adu
        src["read_noise_e"] = cam.baseline_source
    else:
        read_noise_e = cal.values.get("read_noise_e", ASSUMED_READ_NOISE_E[cam.kind])
        src["read_noise_e"] = cal.sources.get(
            "read_noise_e", "assumed datasheet value (pass --dark to measure it)"
        )
    section = {
        "kind": cam.kind,
        "pixel_size_nm": round(pixel_size_nm, 3),
        "qe": qe,
        "baseline_adu": round(max(cam.baseline_adu, 0.0), 2),
        "e_per_adu": float(f"{e_per_adu:.5g}"),
        "em_gain": float(em_gain),
        "read_noise_e": round(float(read_noise_e), 3),
        "spurious_charge_e": 0.0,
        "max_adu": max_adu,
    }
    return section, src


def _setup_dict(
    camera: dict[str, Any],
    sigma_nm: float,
    sample: SampleEstimate,
    density: float,
    density_p95: float,
    shape: tuple[int, int],
    exposure_ms: float,
) -> dict[str, Any]:
    lo, hi = sample.background_photons
    return {
        "camera": camera,
        "psf": {"kind": "gaussian", "sigma_nm": round(sigma_nm, 1)},
        "emitters": {"structure": "uniform", "density_per_um2": round(density, 3)},
        "photophysics": {
            "photons_mean": round(sample.photons_mean, 1),
            "photons_sigma": round(max(sample.photons_sigma, 0.0), 1),
            "on_time_mean_frames": round(sample.on_time_mean_frames, 2),
        },
        "background": {
            "uniform_photons": [round(lo, 2), round(hi, 2)],
            "variation_fraction": round(sample.variation_fraction(), 3),
        },
        "microscope": {
            "fov_px": [int(shape[0]), int(shape[1])],
            "exposure_ms": exposure_ms,
            "frame_interval_ms": exposure_ms,
        },
        "training": {
            # Real samples are locally far denser than their field average: cover 1.5× the
            # densest frames.
            "density_range_per_um2": [0.0, round(max(2.0, 1.5 * density_p95), 2)],
        },
    }


STRUCTURED_COUNT = StructuredSamplesConfig(fraction=1.0, filament_share=0.5)
"""The windows of a structured sample's count curve: filaments and clusters, half each (a
filament or a cluster at the field's mean density is locally far denser, so its spots merge
more than a uniform field's: counted on uniform windows, the bundled tubes came out 2.2 µm⁻²,
on these 3.5, the network's recount 3.8)."""


def _simulated_frames(
    cfg: Config,
    densities: npt.NDArray[np.float64],
    frames_each: int,
    seed: int,
    structured: StructuredSamplesConfig | None = None,
) -> npt.NDArray[np.float32]:
    """(len(densities)·frames_each, h, w) simulated ADU frames of the setup, crops of the FOV
    (uniform, or ``structured`` windows)."""
    h, w = (min(int(s), SIM_CROP_PX) for s in cfg.microscope.fov_px)
    sim = WindowSimulator(cfg, (h, w), n_frames=1)
    gen = torch.Generator().manual_seed(seed)
    d = torch.tensor(np.repeat(densities, frames_each), dtype=torch.float32)
    with torch.no_grad():
        adu = sim.sample(d, gen, structured).adu[:, 0]
    return adu.numpy().astype(np.float32)


def _noise(cam: CameraEstimate) -> PixelNoise:
    """The pixel noise (F², σ_r² in photons²) of a camera estimate."""
    return EXCESS_NOISE_FACTOR_SQ[cam.kind], cam.read_var_photons()


def _count_curve(
    cfg: Config, cam: CameraEstimate, observed: float, structured: bool = False
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Detections per µm² of the movie's detector on frames simulated at known densities
    (for a ``structured`` sample on :data:`STRUCTURED_COUNT` windows)."""
    top = max(2.0, 3.0 * observed)
    grid = np.round(top * np.array([0.05, 0.1, 0.25, 0.5, 0.75, 1.0]), 3)
    frames_each = 12
    windows = STRUCTURED_COUNT if structured else None
    adu = _simulated_frames(cfg, grid, frames_each, seed=7, structured=windows)
    ph = to_photons(adu, cam)
    f2, read_var = _noise(cam)
    points = detect(ph, background_maps(ph, noise=(f2, read_var)), f2, read_var=read_var)
    area = area_um2(adu.shape[1:], cfg.camera.pixel_size_nm)
    counts = np.bincount(points[:, 0], minlength=len(adu)).reshape(len(grid), frames_each)
    return grid, counts.mean(axis=1) / area


def _ks(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 5 or len(b) < 5:
        return math.nan
    return float(stats.ks_2samp(a, b).statistic)


def check_against_simulation(
    cfg: Config,
    cam: CameraEstimate,
    movie: npt.NDArray[np.generic],
    real_spots: npt.NDArray[np.void],
    real_bg: npt.NDArray[np.float32],
    background_density_ratio: float,
) -> tuple[dict[str, float], npt.NDArray[np.float32], npt.NDArray[np.void]]:
    """Kolmogorov–Smirnov distances (0 = identical, 1 = disjoint) real vs simulated movie.

    The background is compared as the setup read it: the whole maps' level (``real_bg``), or on
    a structured sample (``background_density_ratio`` < 1, see :mod:`.sample`) the sparsest
    tiles' level on both movies, the simulated one at those tiles' density: they are far
    emptier than the field's average, which a uniform simulation is not.
    """
    sim = _simulated_frames(cfg, np.array([cfg.emitters.density_per_um2]), CHECK_FRAMES, seed=11)
    sim_ph = to_photons(sim, cam)
    noise = f2, read_var = _noise(cam)
    sim_spots = find_spots(sim_ph, f2, read_var=read_var)
    h, w = sim.shape[1:]
    real = np.asarray(movie[: min(len(movie), 200), :h, :w], dtype=np.float64)
    rs, ss = real_spots[real_spots["ok"]], sim_spots[sim_spots["ok"]]
    if background_density_ratio < 1.0:
        real_ph = to_photons(np.asarray(movie[: min(len(movie), 200)]), cam)
        in_frames = real_spots[real_spots["frame"] < len(real_ph)]
        real_level, *_ = sparse_tile_level(in_frames, tile_levels(real_ph, 8, noise), 8)
        density = cfg.emitters.density_per_um2 * background_density_ratio
        sparse = to_photons(_simulated_frames(cfg, np.array([density]), CHECK_FRAMES, 12), cam)
        sparse_spots = find_spots(sparse, f2, read_var=read_var)
        sim_level, *_ = sparse_tile_level(sparse_spots, tile_levels(sparse, 8, noise), 8)
    else:
        real_level = np.median(real_bg.reshape(len(real_bg), -1), axis=1)
        sim_bg = background_maps(sim_ph, noise=noise)
        sim_level = np.median(sim_bg.reshape(len(sim_bg), -1), axis=1)
    distances = {
        "pixel_values_adu": _ks(real.ravel(), sim.astype(np.float64).ravel()),
        "spot_photons": _ks(rs["photons"], ss["photons"]),
        "psf_sigma_px": _ks(
            0.5 * (rs["sigma_x_px"] + rs["sigma_y_px"]), 0.5 * (ss["sigma_x_px"] + ss["sigma_y_px"])
        ),
        "background_photons": _ks(real_level, sim_level),
    }
    return distances, sim, sim_spots


@dataclass(frozen=True)
class Measured:
    """The raw estimates of one movie (before any correction)."""

    camera: CameraEstimate
    spots: npt.NDArray[np.void]
    bg: npt.NDArray[np.float32]
    sample: SampleEstimate
    sigma_x_nm: float
    sigma_y_nm: float

    @property
    def sigma_nm(self) -> float:
        return 0.5 * (self.sigma_x_nm + self.sigma_y_nm)


def _measure(
    movie: npt.NDArray[np.generic],
    kind: CameraKind,
    dark: npt.NDArray[np.generic] | None,
    qe: float,
    max_adu: int,
    px_nm: float,
    camera: CameraEstimate | None = None,
) -> Measured:
    """Raw estimates of ``movie``; with ``camera`` given (a simulation's own), it is not fitted."""
    cam = camera or estimate_camera(movie, kind=kind, dark=dark, qe=qe, max_adu=max_adu)
    photons = to_photons(movie, cam)
    f2, read_var = _noise(cam)
    tiles = tile_levels(photons, 8, (f2, read_var))
    bg = spread_tiles(tiles, photons.shape[1:])
    spots = find_spots(photons, f2, read_var=read_var, bg=bg)
    fitted = spots[spots["ok"]]
    if len(fitted) < MIN_FITTED_SPOTS:
        raise CalibrationError(
            f"only {len(fitted)} isolated spots could be fitted (need {MIN_FITTED_SPOTS}): the "
            "movie is too dense, too dim or too short to measure the PSF; record a few hundred "
            "frames at a lower 405 nm power (sparser blinking)"
        )
    shape = (int(movie.shape[1]), int(movie.shape[2]))
    sample = estimate_sample(spots, bg, area_um2(shape, px_nm), len(movie), tiles=tiles)
    return Measured(
        camera=cam,
        spots=spots,
        bg=bg,
        sample=sample,
        sigma_x_nm=float(np.median(fitted["sigma_x_px"]) * px_nm),
        sigma_y_nm=float(np.median(fitted["sigma_y_px"]) * px_nm),
    )


def _simulated_movie(
    cfg: Config, density: float, frames: int = 300
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """A blinking movie (frames, h, w) of the setup, three windows of frames/3: ADU, and the
    background that was added (same shape, photons/px)."""
    h, w = (min(int(s), SIM_CROP_PX) for s in cfg.microscope.fov_px)
    per = frames // 3
    sim = WindowSimulator(cfg, (h, w), n_frames=per)
    with torch.no_grad():
        batch = sim.sample(torch.full((3,), float(density)), torch.Generator().manual_seed(3))
    adu = batch.adu.reshape(3 * per, h, w).numpy().astype(np.float32)
    return adu, batch.background.reshape(3 * per, h, w).numpy().astype(np.float32)


def _true_camera(cfg: Config) -> CameraEstimate:
    """The camera of a config as an estimate (to convert a simulation of it with its own)."""
    c = cfg.camera
    gain = (c.em_gain if c.kind == "emccd" else 1.0) * c.qe / c.e_per_adu
    return CameraEstimate(
        kind=c.kind,
        baseline_adu=c.baseline_adu,
        adu_per_photon=gain,
        read_noise_adu=c.read_noise_e / c.e_per_adu,
        slope_adu=EXCESS_NOISE_FACTOR_SQ[c.kind] * gain / c.qe,
        intercept_adu2=0.0,
        mean_range_adu=(c.baseline_adu, c.baseline_adu),
        n_samples=0,
        baseline_source="simulation",
    )


def _frame_levels(bg: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Per-frame background level (T,): the median of each frame's map, photons/px."""
    return np.asarray(np.median(bg.reshape(len(bg), -1), axis=1), dtype=np.float64)


def _background_shift(estimated: npt.NDArray[np.float32], true: npt.NDArray[np.float32]) -> float:
    """Mean per-frame level of the background maps of a simulation less that of its truth."""
    return float(np.mean(_frame_levels(estimated)) - np.mean(_frame_levels(true)))


def _background_bias(truth: Config, density: float) -> float:
    """How high the background estimate reads on a movie simulated from ``truth`` at ``density``
    (the noise pulls a low percentile down, the emitters' light pushes it up)."""
    sim, sim_bg = _simulated_movie(truth, density)
    cam = _true_camera(truth)
    return _background_shift(background_maps(to_photons(sim, cam), noise=_noise(cam)), sim_bg)


def _shifted(level: tuple[float, float], shift: float) -> tuple[float, float]:
    """A background range (lo, hi) photons/px less an estimator's ``shift``, ≥ 0 and ordered."""
    lo, hi = level
    return max(lo - shift, 0.0), max(hi - shift, lo - shift, 0.0)


def _corrected(raw: Measured, on_sim: Measured, truth: Config, bg_shift: float) -> Measured:
    """``raw`` with the bias its spot estimators showed on a simulation of ``truth`` removed.

    The spot detector misses the dim first and last frames of an on-event (the on-time comes out
    short), and the fit's photons and σ carry small biases; the simulation, measured with the same
    estimators and its own true camera, shows each bias, which is divided out. The background
    map (a low percentile of each tile) reads low by the noise and high by the emitters' light;
    ``bg_shift``, the shift it shows on a simulation at the density of the tiles it was read
    from (:func:`_background_bias`), is subtracted. The camera keeps its direct estimate.
    """
    pp = truth.photophysics

    def ratio(true: float, measured: float) -> float:
        return true / measured if measured > 0 and math.isfinite(measured) else 1.0

    sim_s = on_sim.sample
    sample = replace(
        raw.sample,
        photons_mean=raw.sample.photons_mean * ratio(pp.photons_mean, sim_s.photons_mean),
        photons_sigma=raw.sample.photons_sigma * ratio(pp.photons_sigma, sim_s.photons_sigma),
        on_time_mean_frames=raw.sample.on_time_mean_frames
        * ratio(pp.on_time_mean_frames, sim_s.on_time_mean_frames),
        background_photons=_shifted(raw.sample.background_photons, bg_shift),
    )
    psf_sigma = float(getattr(truth.psf, "sigma_nm", on_sim.sigma_nm))
    s = ratio(psf_sigma, on_sim.sigma_nm)
    return replace(
        raw,
        sample=sample,
        sigma_x_nm=raw.sigma_x_nm * s,
        sigma_y_nm=raw.sigma_y_nm * s,
    )


def calibrate(
    movies: list[Path],
    out: Path,
    pixel_size_nm: float | None = None,
    camera: str | None = None,
    dark: Path | None = None,
    qe: float | None = None,
    plot: bool = True,
    refine: bool = True,
    beads: Path | None = None,
    z_step_nm: float | None = None,
    bead_psf: str | None = None,
) -> CalibrationResult:
    """Estimate a setup from raw movies; write ``out/setup.yaml``, ``calibration.json/.png``.

    Raises
    ------
    CalibrationError
        With what to supply instead: a missing camera type or pixel size, a movie too short, too
        dense, constant or saturated, a dark series of another size; a bead stack (``beads``,
        for a 3-D PSF: see :mod:`~live_decode.calibration.bead_calibration`) without its
        ``z_step_nm``, with too few planes or no isolated bead.
    """
    from live_decode.calibration.bead_calibration import calibrate_beads, check_bead_options

    bead_kind, z_step_nm, z_step_source = check_bead_options(beads, z_step_nm, bead_psf)
    movie, cal, dtype = read_movies(movies)
    warnings: list[str] = []
    kind, kind_source = _kind(camera, cal)
    px_nm, px_source = _pixel_size(pixel_size_nm, cal)
    qe_value = float(qe if qe is not None else cal.values.get("qe", 1.0))
    max_adu = int(np.iinfo(np.dtype(dtype)).max) if dtype.startswith("uint") else 65535
    dark_frames = read_movies([dark])[0] if dark is not None else None
    raw = _measure(movie, kind, dark_frames, qe_value, max_adu, px_nm)
    warnings += raw.camera.warnings
    if len(movie) < SHORT_MOVIE_FRAMES:
        warnings.append(
            f"the movie has only {len(movie)} frames: the on-time, photons and density rest on "
            f"few blinking events; calibrate on a few hundred frames ({SHORT_MOVIE_FRAMES}+)"
        )
    _compare_with_file(raw.camera, cal, warnings)
    bead_cal = None
    if beads is not None:
        bead_cal = calibrate_beads(beads, z_step_nm, px_nm, out, raw.camera, bead_kind)
        warnings += bead_cal.warnings
    elif abs(raw.sigma_x_nm - raw.sigma_y_nm) > 0.1 * raw.sigma_nm:
        warnings.append(
            f"the PSF is elliptical (σx {raw.sigma_x_nm:.0f} nm, σy {raw.sigma_y_nm:.0f} nm): an "
            "astigmatic 3-D setup needs a bead stack (--beads); the setup uses their mean"
        )
    shape = (int(movie.shape[1]), int(movie.shape[2]))
    exposure = float(cal.values.get("exposure_ms", 20.0))
    sources: dict[str, str] = {
        "kind": kind_source,
        "pixel_size_nm": px_source,
        "exposure_ms": cal.sources.get("exposure_ms", "default (the file does not say)"),
    }

    # A structured sample (its sparsest tiles far emptier than the field): counted on structured
    # windows, and trained with them.
    structured = raw.sample.background_density_ratio < 1.0

    def setup(
        est: Measured, density_given: float | None = None
    ) -> tuple[dict[str, Any], dict[str, str], float]:
        """The setup of an estimate, its sources, and the density read off the count curve
        (or ``density_given``, the 95th percentile scaled with it)."""
        cam_section, cam_sources = _camera_section(est.camera, px_nm, qe_value, cal, max_adu)
        first = _setup_dict(
            cam_section, est.sigma_nm, est.sample, est.sample.detected_per_um2, 0.0, shape, exposure
        )
        grid, detected = _count_curve(
            config_from_dict(first), raw.camera, raw.sample.detected_per_um2, structured
        )
        density = invert_count_curve(grid, detected, raw.sample.detected_per_um2)
        p95 = invert_count_curve(grid, detected, raw.sample.detected_per_um2_p95)
        if density_given is not None:
            p95 *= density_given / max(density, 1e-9)
            density = density_given
        data = _setup_dict(cam_section, est.sigma_nm, est.sample, density, p95, shape, exposure)
        if structured:
            data["training"]["structured"] = {"fraction": 0.5, "filament_share": 0.5}
        data["_count_curve"] = {"true": grid, "detected": detected}
        return data, cam_sources, density

    data, cam_sources, density = setup(raw)
    density_given: float | None = None
    if refine:
        # Indirect inference: the spot estimators' biases are those they show on a movie
        # simulated from the setup itself; remove them once.
        truth = config_from_dict({k: v for k, v in data.items() if not k.startswith("_")})
        sim, _ = _simulated_movie(truth, density)
        on_sim = _measure(sim, kind, None, qe_value, max_adu, px_nm, camera=_true_camera(truth))
        bg_density = density * raw.sample.background_density_ratio
        corrected = _corrected(raw, on_sim, truth, _background_bias(truth, bg_density))
        data, cam_sources, density = setup(corrected)
        estimate = corrected
    else:
        estimate = raw
    fluct: FluctuationEstimate | None = None
    if refine and density > FLUCTUATION_ABOVE_PER_UM2:
        truth = config_from_dict({k: v for k, v in data.items() if not k.startswith("_")})
        fluct = estimate_fluctuations(movie, raw.camera, truth, _true_camera(truth))
    blinking: BlinkingEstimate | None = None
    if fluct is not None:
        s = estimate.sample
        spread = s.photons_sigma / s.photons_mean if s.photons_mean > 0 else 0.3
        sample = replace(
            s,
            on_time_mean_frames=fluct.on_time_mean_frames,
            photons_mean=fluct.photons_mean,
            photons_sigma=spread * fluct.photons_mean,
        )
        estimate = replace(estimate, sample=sample)
        density_given = fluct.density_per_um2
        data, cam_sources, density = setup(estimate, density_given)
        # The background's bias from the emitters' light, again at the density now known.
        truth = config_from_dict({k: v for k, v in data.items() if not k.startswith("_")})
        shift = _background_bias(truth, density * raw.sample.background_density_ratio)
        sample = replace(
            estimate.sample,
            background_photons=_shifted(raw.sample.background_photons, shift),
        )
        estimate = replace(estimate, sample=sample)
        data, cam_sources, density = setup(estimate, density_given)
        for key in ("on_time_mean_frames", "photons_mean", "density_per_um2"):
            sources[key] = "pixel signal cumulants matched to simulated movies of the setup"
    elif (
        estimate.sample.on_time_mean_frames <= LINKING_MIN_ON_TIME or density > LINKING_MAX_DENSITY
    ):
        # Linking cannot see sub-frame on-times and breaks tracks when dense: read the on-time
        # (and the flux that goes with it) off the movie's temporal correlation instead.
        truth = config_from_dict({k: v for k, v in data.items() if not k.startswith("_")})
        fitted_photons = raw.spots["photons"][raw.spots["ok"]]
        blinking = estimate_blinking(
            truth,
            _true_camera(truth),
            EXCESS_NOISE_FACTOR_SQ[kind],
            to_photons(movie, raw.camera),
            float(np.median(fitted_photons)),
            density,
        )
        s = estimate.sample
        spread = s.photons_sigma / s.photons_mean if s.photons_mean > 0 else 0.3
        sample = replace(
            s,
            on_time_mean_frames=blinking.on_time_mean_frames,
            photons_mean=blinking.photons_mean,
            photons_sigma=spread * blinking.photons_mean,
        )
        estimate = replace(estimate, sample=sample)
        data, cam_sources, density = setup(estimate, density_given)
        sources["on_time_mean_frames"] = "temporal correlation (frames t, t+1 vs far apart)"
        sources["photons_mean"] = "flux reproducing the median spot photons at that on-time"
        if blinking.on_time_mean_frames <= blinking.curve_on_time[0]:
            warnings.append(
                "consecutive frames are no more alike than distant ones: the emitters blink "
                f"within a frame; the on-time is set to the shortest simulated, "
                f"{blinking.curve_on_time[0]:g} frames"
            )
    else:
        sources["on_time_mean_frames"] = "spots linked frame to frame"
    sources.update(cam_sources)
    curve = data.pop("_count_curve")
    grid, detected = np.asarray(curve["true"]), np.asarray(curve["detected"])
    _check_density(density, warnings)
    if density > grid[-1]:
        warnings.append(
            f"the movie is denser ({density:.1f} µm⁻²) than a spot detector can count reliably: "
            "the density is extrapolated; count it with a network trained on this setup"
        )
    yaml_data = data
    if bead_cal is not None:
        data["psf"] = bead_cal.psf_section()
        data["emitters"]["z_range_nm"] = [round(v, 1) for v in bead_cal.z_range_nm]
        sources["psf"] = f"bead stack {beads} ({bead_cal.kind})"
        sources["bead_z_step_nm"] = z_step_source
        yaml_data = {**data, "psf": bead_cal.psf_section(relative_to=out.resolve())}
    cfg = config_from_dict(data, source="calibrate")
    cam, sample = estimate.camera, estimate.sample
    sx, sy = estimate.sigma_x_nm, estimate.sigma_y_nm
    fitted = raw.spots[raw.spots["ok"]]
    spots = raw.spots
    distances, sim_frames, sim_spots = check_against_simulation(
        cfg, cam, movie, spots, raw.bg, raw.sample.background_density_ratio
    )
    result = CalibrationResult(
        config=cfg,
        camera=cam,
        sample=sample,
        psf_sigma_nm=(sx, sy),
        density_per_um2=density,
        distances=distances,
        sources=sources,
        warnings=warnings,
        beads=bead_cal,
    )
    out.mkdir(parents=True, exist_ok=True)
    setup_path = out / "setup.yaml"
    header = "# Written by `live-decode calibrate` from " + ", ".join(map(str, movies)) + "\n"
    setup_path.write_text(header + yaml.safe_dump(yaml_data, sort_keys=False), encoding="utf-8")
    report = {
        "movies": [str(p) for p in movies],
        "frames_used": len(movie),
        "camera": cam.to_dict(),
        "psf_sigma_nm": {"x": sx, "y": sy, "spots_fitted": len(fitted)},
        "sample": sample.to_dict(),
        "density_per_um2": {
            "detected": sample.detected_per_um2,
            "corrected": density,
            "count_curve": {"true": grid, "detected": detected},
        },
        "blinking": None if blinking is None else blinking.to_dict(),
        "fluctuations": None if fluct is None else fluct.to_dict(),
        "sources": sources,
        "distances_ks": distances,
        "warnings": warnings,
    }
    if bead_cal is not None:
        report["beads"] = bead_cal.to_dict()
    result.files = {"setup": setup_path, "json": write_json(out / "calibration.json", report)}
    if bead_cal is not None:
        result.files["psf_spline"] = bead_cal.spline.calibration
    if plot:
        from live_decode.calibration.report import plot_calibration

        png = out / "calibration.png"
        result.files["png"] = plot_calibration(png, movie, spots, sim_frames, sim_spots, result)
    for w in warnings:
        log.warning("%s", w)
    return result
