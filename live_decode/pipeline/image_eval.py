"""Super-resolution images of one movie scored against its ground truth: NMSE and FRC.

Every kind is scored on the same grid (camera pixel / ``upsampling``): the network's own image
where it yields one (Deep-STORM's summed density tiles), and for every kind the histogram of its
localizations. The ground truth is the histogram of the true emitters of every frame. NMSE is
Deep-STORM's measure (:func:`live_decode.evaluation.images.image_nmse`: both images blurred with
σ = 1 grid pixel, the estimate optimally scaled). FRC (1/7 threshold) is computed between the
images of alternate blocks of :data:`FRC_BLOCK_FRAMES` frames: an emitter that stays on for a few
frames (and DECODE's temporal context, which shares input frames between neighbours) then stays
within one half except at block edges. With even/odd frames instead the two halves hold the same
emitters and the FRC never fell to 1/7 on the demo movies.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from live_decode.evaluation.images import image_nmse, render_points
from live_decode.model.seam import NetworkLocalizer
from live_decode.quality.frc import frc_from_images

FloatArray = npt.NDArray[np.float64]
PAPER_UPSAMPLING = 8
FRC_BLOCK_FRAMES = 10


def frc_half(frame_indices: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """The FRC half (0 or 1) of each frame: alternate blocks of :data:`FRC_BLOCK_FRAMES`."""
    return (np.asarray(frame_indices, dtype=np.int64) // FRC_BLOCK_FRAMES) % 2


@dataclass(frozen=True)
class ImageScores:
    """Image figures of one model on one movie.

    ``nmse`` and ``frc_nm`` are of the network's own image when it yields one, else of its
    localizations' histogram (``image_source`` says which); ``nmse_locs`` is always the latter.
    """

    upsampling: int
    pixel_nm: float
    image_source: str
    nmse: float
    nmse_locs: float
    frc_nm: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class ImageCollector:
    """``on_output`` of :func:`live_decode.inference.offline.localize_movie`: the network's tiles,
    summed over each FRC half of the frames (:func:`frc_half`), binned to the evaluation grid.

    ``elapsed_s`` is the wall time spent here: scoring's, not inference's (``evaluate`` takes it
    out of the frames/s it reports)."""

    def __init__(self, localizer: NetworkLocalizer, upsampling: int) -> None:
        self.localizer = localizer
        self.upsampling = upsampling
        self.halves: FloatArray | None = None
        self.elapsed_s = 0.0

    def __call__(self, out: torch.Tensor, frame_indices: np.ndarray) -> None:
        started = time.perf_counter()
        try:
            self._collect(out, frame_indices)
        finally:
            self.elapsed_s += time.perf_counter() - started

    def _collect(self, out: torch.Tensor, frame_indices: np.ndarray) -> None:
        tiles = self.localizer.image(out)
        u = self.localizer.image_upsampling
        if tiles is None or u is None:
            return
        if u % self.upsampling:
            raise ValueError(
                f"the network's images are at ×{u}; they can be scored at ×{u} or an integer "
                f"fraction of it, not ×{self.upsampling} (pass --image-upsampling {u})"
            )
        k = u // self.upsampling
        if k > 1:
            tiles = F.avg_pool2d(tiles[:, None], k)[:, 0] * (k * k)
        parity = torch.as_tensor(frc_half(frame_indices), device=tiles.device)
        even = tiles[parity == 0].sum(0).double().cpu().numpy()
        odd = tiles[parity == 1].sum(0).double().cpu().numpy()
        if self.halves is None:
            self.halves = np.zeros((2, *even.shape))
        self.halves[0] += even
        self.halves[1] += odd


def score_images(
    locs: np.ndarray,
    ground_truth: np.ndarray,
    shape_px: tuple[int, int],
    pixel_size_nm: float,
    upsampling: int,
    network_halves: FloatArray | None = None,
) -> ImageScores:
    """NMSE and FRC of a model's image(s) of a (T, H, W) movie of ``shape_px`` = (H, W)."""
    grid = (shape_px[0] * upsampling, shape_px[1] * upsampling)
    pixel_nm = pixel_size_nm / upsampling
    truth = render_points(ground_truth["x_nm"], ground_truth["y_nm"], grid, pixel_nm)
    parity = frc_half(locs["frame"])
    loc_halves = np.stack(
        [
            render_points(locs["x_nm"][parity == p], locs["y_nm"][parity == p], grid, pixel_nm)
            for p in (0, 1)
        ]
    )
    halves = loc_halves if network_halves is None else network_halves
    return ImageScores(
        upsampling=upsampling,
        pixel_nm=pixel_nm,
        image_source="localizations" if network_halves is None else "network image",
        nmse=image_nmse(halves.sum(0), truth),
        nmse_locs=image_nmse(loc_halves.sum(0), truth),
        frc_nm=_frc_nm(halves, pixel_nm),
    )


def _frc_nm(halves: FloatArray, pixel_nm: float) -> float:
    """FRC resolution of the two half images (central square), nm; NaN if it never crosses."""
    h, w = halves.shape[1:]
    side = min(h, w)
    r0, c0 = (h - side) // 2, (w - side) // 2
    crop = halves[:, r0 : r0 + side, c0 : c0 + side]
    if side < 8 or not np.all(crop.reshape(2, -1).sum(1) > 0):
        return math.nan
    return frc_from_images(crop[0], crop[1], pixel_nm).resolution_nm
