"""The snapshots the receiver hands to the GUI (no Qt)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from live_decode.viewer.accumulator import ImageView, RenderSettings
from live_decode.viewer.density import FloatArray


@dataclass(frozen=True)
class PreviewFrame:
    """The latest raw frame: (H, W) pixels in ADU (a private copy) and its camera pixel size."""

    index: int
    pixels: npt.NDArray[Any]
    pixel_size_nm: float
    received: int  # how many preview frames had arrived, this one included


@dataclass(frozen=True)
class Detections:
    """One frame's localizations for the raw-frame overlay: x, y in nm, prob, larger σ in nm."""

    frame: int
    x_nm: npt.NDArray[np.float32]
    y_nm: npt.NDArray[np.float32]
    prob: npt.NDArray[np.float32]
    sigma_nm: npt.NDArray[np.float32]


@dataclass(frozen=True)
class FrameView:
    """A preview frame to show, with its localizations.

    ``localized`` is True when the frame's results have arrived: then ``detections`` are its
    localizations (None if it had none). False means they have not arrived (yet).
    """

    frame: PreviewFrame
    detections: Detections | None
    localized: bool


@dataclass(frozen=True)
class Traces:
    """Copies of the plotted series (all indexed by frame)."""

    frames: FloatArray
    density_per_um2: FloatArray
    smoothed: FloatArray
    laser_frames: FloatArray
    laser_mw: FloatArray


@dataclass(frozen=True)
class RenderSnapshot:
    """A region of the super-resolution image with what is needed to place and label it."""

    view: ImageView
    settings: RenderSettings
    canvas_shape: tuple[int, int]  # (rows, cols) of the whole render
    version: int
    drawn: int
    kept: int
    not_kept: int


@dataclass(frozen=True)
class NetworkImage:
    """The super-resolution image a network yields itself (Deep-STORM), as last received.

    ``pixels`` (rows, cols) float32 is the summed emitter density of ``frames`` frames (since
    the viewer's last reset), the last of them ``last_frame``; a pixel is ``pixel_size_nm``.
    ``version`` grows with every new image.
    """

    pixels: npt.NDArray[np.float32]
    pixel_size_nm: float
    frames: int
    last_frame: int
    version: int
