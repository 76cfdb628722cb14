"""Does a model fit the data it is given? Compare the model card with the camera, config and frames.

A DECODE-style network is right only for data like those it was trained on: the same camera
noise (EMCCD excess noise or not, read noise in photons), pixel size, PSF (kind, width, 2-D or
3-D and its z range) and temporal context. :func:`check_compatible` is a pure function of the
card, the camera description and (when known) the run's config, so a supervisor can refuse a run
before acquisition starts; :func:`check_frame` adds what only the pixels tell (baseline, gain).
Each :class:`Mismatch` names what differs, both values, and what to do.

No torch here: the card comes from :func:`live_decode.model.card.read_card`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from live_decode.config import (
    AstigmaticPsfConfig,
    Config,
    GaussianPsfConfig,
    SplinePsfConfig,
)
from live_decode.errors import ModelCardError
from live_decode.inference.photon_stats import adu_per_photon, photon_statistics
from live_decode.messages import CameraMeta
from live_decode.model.card import ModelCard

MIN_FRAME_PX = 8
"""Smallest frame side the network takes (frames are padded up to a multiple of 4)."""
PIXEL_SIZE_TOLERANCE = 0.05  # relative
PSF_WIDTH_TOLERANCE = 0.15  # relative: σ of a Gaussian, σ0 / focal offset / depth of astigmatism
READ_NOISE_FACTOR = 3.0  # read noise in photons may differ this much before it matters
READ_NOISE_FLOOR_PHOTONS = 1.0  # ... and only once it is above one photon rms
Z_RANGE_TOLERANCE_NM = 50.0
GAIN_RATIO_TOLERANCE = 1.5
"""The ADU per photon the pixels' noise implies may differ this much (×, ÷) from the camera
calibration's; correct calibrations measure 0.95–1.08 on one 64×64 frame, a 3× error 2.9–3.6."""
CALIBRATE_HINT = (
    "measure the camera with `live-decode calibrate MOVIE --out setup/` and pass "
    "--config setup/setup.yaml (or correct e_per_adu, em_gain and baseline_adu in your config)"
)

IGNORE_HINT = "pass --ignore-model-mismatch to run anyway (a warning is kept in the summary)"


@dataclass(frozen=True)
class Mismatch:
    """One way the data differ from what the model was trained for.

    ``what`` names the property, ``model`` and ``data`` give both values in words, ``fix`` says
    what to do about it.
    """

    what: str
    model: str
    data: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: model trained for {self.model}, this run has {self.data}; {self.fix}"


def _train_hint(config_name: str | None) -> str:
    if config_name is None:  # the embedded demo config stood in for the user's
        return (
            "train a model for your setup: `live-decode train YOUR_CONFIG.yaml --out "
            "models/NAME`, then pass it and --model models/NAME/model.pt (no config was "
            "given: the demo's was used)"
        )
    return (
        f"train a model for this config: `live-decode train {config_name} --out models/NAME`, "
        "then pass --model models/NAME/model.pt"
    )


def _is_3d(cfg: Config) -> bool:
    lo, hi = cfg.emitters.z_range_nm
    return not isinstance(cfg.psf, GaussianPsfConfig) or hi > lo


def _em(em_gain: float) -> str:
    return f"an EMCCD (EM gain {em_gain:g})" if em_gain > 1 else "a camera without EM gain"


def _read_noise_photons(read_noise_e: float, em_gain: float, qe: float) -> float:
    """Read noise referred to the input, photons rms (EM gain divides it, QE scales it)."""
    return read_noise_e / max(em_gain, 1.0) / qe


def _differs(a: float, b: float, rel: float) -> bool:
    return abs(a - b) > rel * max(abs(a), abs(b), 1e-12)


def camera_mismatches(card: ModelCard, camera: CameraMeta, train: str) -> list[Mismatch]:
    """Camera kind, read noise in photons and pixel size of ``camera`` against the card."""
    trained = card.parsed_config.camera
    out: list[Mismatch] = []
    trained_em = trained.kind == "emccd" and trained.em_gain > 1
    if trained_em != (camera.em_gain > 1):
        out.append(
            Mismatch(
                "camera type",
                _em(trained.em_gain) if trained_em else "an sCMOS/CCD camera (no EM gain)",
                _em(camera.em_gain),
                f"{train} (or correct em_gain in the camera section if it is wrong)",
            )
        )
    elif camera.read_noise_e > 0:
        rn_model = _read_noise_photons(trained.read_noise_e, trained.em_gain, trained.qe)
        rn_data = _read_noise_photons(camera.read_noise_e, camera.em_gain, camera.qe)
        worst = max(rn_model, rn_data)
        ratio = worst / max(min(rn_model, rn_data), 1e-6)
        if worst > READ_NOISE_FLOOR_PHOTONS and ratio > READ_NOISE_FACTOR:
            out.append(
                Mismatch(
                    "read noise",
                    f"{rn_model:.2g} photons rms (read noise / EM gain / QE)",
                    f"{rn_data:.2g} photons rms",
                    f"{train} (or check read_noise_e, em_gain and qe in the camera section)",
                )
            )
    trained_px = trained.pixel_size_nm
    if _differs(camera.pixel_size_nm, trained_px, PIXEL_SIZE_TOLERANCE):
        out.append(
            Mismatch(
                "pixel size",
                f"{trained_px:g} nm pixels",
                f"{camera.pixel_size_nm:g} nm pixels",
                f"check camera.pixel_size_nm (or the file's pixel size), or {train}",
            )
        )
    return out


def _psf_words(cfg: Config) -> str:
    psf = cfg.psf
    if isinstance(psf, GaussianPsfConfig):
        if psf.sigma_y_nm is not None:
            return f"a 2-D Gaussian PSF (σx {psf.sigma_nm:g} nm, σy {psf.sigma_y_nm:g} nm)"
        return f"a 2-D Gaussian PSF (σ {psf.sigma_nm:g} nm)"
    if isinstance(psf, AstigmaticPsfConfig):
        return (
            f"an astigmatic PSF (σ0 {psf.sigma0_nm:g} nm, focal offset ±{psf.focal_offset_nm:g} nm,"
            f" depth {psf.depth_of_field_nm:g} nm)"
        )
    return f"a spline PSF ({psf.calibration.name})"


def _z_words(cfg: Config) -> str:
    lo, hi = cfg.emitters.z_range_nm
    return f"3-D data (z {lo:g}..{hi:g} nm)" if _is_3d(cfg) else "2-D data (z = 0)"


def _psf_shape_differs(trained: Config, data: Config) -> bool:
    a, b = trained.psf, data.psf
    if isinstance(a, GaussianPsfConfig) and isinstance(b, GaussianPsfConfig):
        pairs = list(zip(a.sigma_x_y_nm, b.sigma_x_y_nm, strict=True))
        return any(_differs(x, y, PSF_WIDTH_TOLERANCE) for x, y in pairs)
    if isinstance(a, AstigmaticPsfConfig) and isinstance(b, AstigmaticPsfConfig):
        pairs = [
            (a.sigma0_nm, b.sigma0_nm),
            (a.focal_offset_nm, b.focal_offset_nm),
            (a.depth_of_field_nm, b.depth_of_field_nm),
        ]
        return any(_differs(x, y, PSF_WIDTH_TOLERANCE) for x, y in pairs)
    if isinstance(a, SplinePsfConfig) and isinstance(b, SplinePsfConfig):
        return a.calibration.name != b.calibration.name
    return False


def config_mismatches(card: ModelCard, cfg: Config, train: str) -> list[Mismatch]:
    """PSF kind and shape, 2-D vs 3-D, z range and temporal context of ``cfg`` against the card."""
    trained = card.parsed_config
    out: list[Mismatch] = []
    model_3d, data_3d = card.parsed_scaling.is_3d, _is_3d(cfg)
    if model_3d != data_3d:
        out.append(
            Mismatch(
                "2-D vs 3-D",
                _z_words(trained),
                f"{_z_words(cfg)} with {_psf_words(cfg)}",
                f"{train}; a {'2-D' if not model_3d else '3-D'} model "
                f"{'reports every z as 0' if not model_3d else 'invents z'} on such data",
            )
        )
    elif model_3d:
        (tlo, thi), (dlo, dhi) = trained.emitters.z_range_nm, cfg.emitters.z_range_nm
        if dlo < tlo - Z_RANGE_TOLERANCE_NM or dhi > thi + Z_RANGE_TOLERANCE_NM:
            out.append(
                Mismatch(
                    "z range",
                    f"z {tlo:g}..{thi:g} nm",
                    f"z {dlo:g}..{dhi:g} nm",
                    f"{train} (emitters outside the trained range get clipped z)",
                )
            )
    if trained.psf.kind != cfg.psf.kind:
        out.append(Mismatch("PSF kind", _psf_words(trained), _psf_words(cfg), train))
    elif _psf_shape_differs(trained, cfg):
        out.append(Mismatch("PSF shape", _psf_words(trained), _psf_words(cfg), train))
    if card.temporal_context != cfg.model.temporal_context:
        words = {True: "temporal context (frames t−1, t, t+1)", False: "single frames"}
        out.append(
            Mismatch(
                "temporal context",
                words[card.temporal_context],
                f"model.temporal_context: {str(cfg.model.temporal_context).lower()} "
                f"({words[cfg.model.temporal_context]})",
                f"{train}, or set model.temporal_context to {str(card.temporal_context).lower()}",
            )
        )
    return out


def frame_size_mismatches(shape_px: Sequence[int]) -> list[Mismatch]:
    """A frame smaller than the network's minimum side (larger ones are padded as needed)."""
    h, w = (int(s) for s in shape_px[-2:])
    if min(h, w) >= MIN_FRAME_PX:
        return []
    return [
        Mismatch(
            "frame size",
            f"frames of at least {MIN_FRAME_PX}×{MIN_FRAME_PX} px",
            f"frame size {h}×{w} px (smaller than {MIN_FRAME_PX} px)",
            f"use a camera ROI of at least {MIN_FRAME_PX}×{MIN_FRAME_PX} px",
        )
    ]


def check_compatible(
    card: ModelCard,
    camera: CameraMeta,
    config: Config | None = None,
    *,
    frame_shape_px: Sequence[int] | None = None,
    config_name: str | None = None,
) -> list[Mismatch]:
    """Every difference between what the model was trained for and this run, before acquisition.

    Parameters
    ----------
    card
        The model's card (:func:`live_decode.model.card.read_card`).
    camera
        The camera as the source describes it (or ``CameraMeta.from_config``-style from config).
    config
        The run's config: PSF, z range and temporal context are compared when given. Without it
        (a file localized without ``--config``) only the camera is checked.
    frame_shape_px
        (H, W) of the frames, when known before the first frame.
    config_name
        The config file's name, used in the suggested ``live-decode train`` command.

    Returns
    -------
    list of Mismatch
        Empty when the model fits.
    """
    train = _train_hint(config_name)
    out = camera_mismatches(card, camera, train)
    if config is not None:
        out += config_mismatches(card, config, train)
    if frame_shape_px is not None:
        out += frame_size_mismatches(frame_shape_px)
    return out


def check_frame(card: ModelCard, camera: CameraMeta, frame: np.ndarray) -> list[Mismatch]:
    """What the first frame's pixels say: size, dtype, baseline and gain plausibility."""
    out = frame_size_mismatches(frame.shape)
    if frame.dtype.kind not in "uif":
        out.append(
            Mismatch("frame dtype", "numeric pixels", f"dtype {frame.dtype}", "send camera ADU")
        )
        return out
    bg_max = card.parsed_scaling.bg_max
    photons = camera.adu_to_photons(float(np.median(frame)))
    if photons < -0.5 * bg_max:
        out.append(
            Mismatch(
                "baseline",
                f"a background of 0..{bg_max:.0f} photons/px",
                f"a median pixel {photons:.0f} photons below zero with baseline "
                f"{camera.baseline_adu:g} ADU",
                "is the camera offset right? set camera.baseline_adu",
            )
        )
    if photons > 20 * bg_max:
        out.append(
            Mismatch(
                "gain",
                f"a background of ≤ {bg_max:.0f} photons/px",
                f"a median pixel of {photons:.0f} photons",
                "check e_per_adu / em_gain in the camera section",
            )
        )
    elif photons >= -0.5 * bg_max:
        out += photon_statistics_mismatches(card, camera, frame)
    return out


def photon_statistics_mismatches(
    card: ModelCard, camera: CameraMeta, frame: np.ndarray
) -> list[Mismatch]:
    """The frame's background noise against the level the camera calibration converts it to.

    A calibration whose ADU per photon is off by a factor r feeds the network r times too many
    photons with r² times the noise (:mod:`live_decode.inference.photon_stats`): the model was
    trained on correctly converted photons, so it is refused like any other mismatch.
    """
    stats = photon_statistics(camera, frame)
    r = stats.gain_ratio
    if not stats.conclusive or 1.0 / GAIN_RATIO_TOLERANCE <= r <= GAIN_RATIO_TOLERANCE:
        return []
    used = adu_per_photon(camera)
    trained = card.parsed_config.camera
    card_gain = (trained.em_gain if trained.kind == "emccd" else 1.0) * trained.qe
    card_gain /= trained.e_per_adu
    implied = f"≈ {used * r:.3g} ADU/photon" if r > 0 else "less noise than the read noise alone"
    return [
        Mismatch(
            "photon statistics",
            f"correctly converted photons (its camera: {card_gain:.3g} ADU/photon)",
            f"a background noise of {stats.variance_photons2:.3g} photons² at "
            f"{stats.level_photons:.3g} photons/px where the camera calibration in use "
            f"({used:.3g} ADU/photon, baseline {camera.baseline_adu:g} ADU) predicts "
            f"{stats.predicted_variance_photons2:.3g}: the pixels say {implied} "
            f"({r:.2g}× the calibration)",
            f"the gain or the baseline is wrong; {CALIBRATE_HINT}",
        )
    ]


def card_mismatches(
    card: ModelCard,
    camera: CameraMeta,
    frame: np.ndarray,
    config: Config | None = None,
    config_name: str | None = None,
) -> list[str]:
    """Human-readable differences between what the model was trained for and this stream."""
    found = check_compatible(card, camera, config, config_name=config_name)
    found += check_frame(card, camera, frame)
    return [str(m) for m in found]


def refuse(card: ModelCard, mismatches: Sequence[Mismatch | str], override: bool) -> list[str]:
    """Raise :class:`ModelCardError` naming every mismatch unless ``override``; return them."""
    problems = [str(m) for m in mismatches]
    if problems and not override:
        raise ModelCardError(
            f"model '{card.name}' does not match this camera/stream:\n  - "
            + "\n  - ".join(problems)
            + f"\nFix what is named above, or {IGNORE_HINT}."
        )
    return problems


def check_card(
    card: ModelCard,
    camera: CameraMeta,
    frame: np.ndarray,
    override: bool,
    config: Config | None = None,
    config_name: str | None = None,
) -> list[str]:
    """Raise :class:`ModelCardError` on a mismatch unless ``override``; return the mismatches."""
    return refuse(card, card_mismatches(card, camera, frame, config, config_name), override)
