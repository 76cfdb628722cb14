"""Does a model fit the data it is given? Compare the model card with the camera and the frames."""

from __future__ import annotations

import numpy as np

from live_decode.errors import ModelCardError
from live_decode.messages import CameraMeta
from live_decode.model.checkpoint import ModelCard

MIN_FRAME_PX = 8
PIXEL_SIZE_TOLERANCE = 0.05  # relative


def card_mismatches(card: ModelCard, camera: CameraMeta, frame: np.ndarray) -> list[str]:
    """Human-readable differences between what the model was trained for and this stream."""
    cfg = card.parsed_config
    scaling = card.parsed_scaling
    problems: list[str] = []
    trained_px = cfg.camera.pixel_size_nm
    if abs(camera.pixel_size_nm - trained_px) > PIXEL_SIZE_TOLERANCE * trained_px:
        problems.append(
            f"pixel size: camera {camera.pixel_size_nm:g} nm, model trained for {trained_px:g} nm"
        )
    trained_em = cfg.camera.kind == "emccd" and cfg.camera.em_gain > 1
    if trained_em != (camera.em_gain > 1):
        kind = "EMCCD (EM gain > 1)" if trained_em else "sCMOS/no EM gain"
        problems.append(
            f"camera type: model trained for {kind}, camera reports em_gain {camera.em_gain:g}"
        )
    h, w = frame.shape[-2:]
    if min(h, w) < MIN_FRAME_PX:
        problems.append(f"frame size {h}×{w} px is smaller than {MIN_FRAME_PX} px")
    if frame.dtype.kind not in "uif":
        problems.append(f"frame dtype {frame.dtype} is not numeric")
        return problems
    photons = (
        (float(np.median(frame)) - camera.baseline_adu) * camera.e_per_adu / camera.em_gain
    ) / camera.qe
    if photons < -0.5 * scaling.bg_max:
        problems.append(
            f"baseline: the median pixel is {photons:.0f} photons below zero with baseline "
            f"{camera.baseline_adu:g} ADU; is the camera offset right?"
        )
    if photons > 20 * scaling.bg_max:
        problems.append(
            f"gain: the median pixel converts to {photons:.0f} photons, far above the "
            f"background the model knows (≤ {scaling.bg_max:.0f}); check e_per_adu / em_gain"
        )
    return problems


def check_card(card: ModelCard, camera: CameraMeta, frame: np.ndarray, override: bool) -> list[str]:
    """Raise :class:`ModelCardError` on a mismatch unless ``override``; return the mismatches."""
    problems = card_mismatches(card, camera, frame)
    if problems and not override:
        raise ModelCardError(
            f"model '{card.name}' does not match this camera/stream:\n  - "
            + "\n  - ".join(problems)
            + "\nTrain a model for this camera (live-decode train), fix the camera metadata, "
            "or pass --ignore-model-mismatch to run anyway."
        )
    return problems
