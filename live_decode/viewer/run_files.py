"""A run read back from its directory, for the viewer (no Qt): ``live-decode view RUN_DIR``.

What a run leaves (DESIGN.md §1): ``locs.csv`` (ThunderSTORM, nm) with ``locs.yaml`` (Picasso's
sidecar: frame count, width, height, pixel size), ``control.csv`` (the density loop's trace) and,
when the raw frames were recorded, a ``raw*.tif`` movie, and, from a network that yields images
(Deep-STORM), ``sr_image.tif``. The viewer shows the localizations as the super-resolution image
(or the network's own image), the per-frame density and the laser trace, and the last raw frame
with its detections circled.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from live_decode.errors import LiveDecodeError
from live_decode.io.sr_image import SR_IMAGE_NAME, SrImage, read_sr_image
from live_decode.messages import FrameStats, Localizations
from live_decode.viewer.snapshots import PreviewFrame

log = logging.getLogger("live_decode.viewer.run_files")

LOCS_NAME: Final = "locs.csv"
SIDECAR_NAME: Final = "locs.yaml"
CONTROL_NAME: Final = "control.csv"
RAW_GLOB: Final = "raw*.tif*"


@dataclass(frozen=True)
class RecordedRun:
    """What the viewer shows of a run directory.

    ``laser_frames``/``laser_mw`` and ``target_per_um2`` are empty/None without ``control.csv``;
    ``raw`` is the last recorded raw frame, if the run kept its frames; ``network_image`` the
    network's own image and its pixel size (nm), if it wrote one.
    """

    run_dir: Path
    locs: Localizations
    stats: list[FrameStats]
    pixel_size_nm: float
    frame_shape: tuple[int, int] | None
    laser_frames: npt.NDArray[np.float64]
    laser_mw: npt.NDArray[np.float64]
    target_per_um2: float | None
    raw: PreviewFrame | None
    model_line: str = ""
    network_image: SrImage | None = None


def load_run(run_dir: Path, pixel_size_nm: float = 100.0) -> RecordedRun:
    """Read a run directory (see the module docstring).

    Parameters
    ----------
    pixel_size_nm
        Camera pixel size used when ``locs.yaml`` does not give one.

    Raises
    ------
    LiveDecodeError
        If ``run_dir`` has no ``locs.csv``.
    """
    path = run_dir / LOCS_NAME
    if not path.is_file():
        raise LiveDecodeError(
            f"{path} not found: {run_dir} holds no localizations (is it a run directory, and "
            "did the run's worker start?)"
        )
    from live_decode.io.thunderstorm import read_thunderstorm_csv

    locs = read_thunderstorm_csv(path)
    frames, shape, px, model = _sidecar(run_dir / SIDECAR_NAME)
    px = px or pixel_size_nm
    n_frames = max(frames or 0, int(locs["frame"].max()) + 1 if len(locs) else 0)
    stats = frame_stats(locs, n_frames, None if shape is None else shape[0] * shape[1] * px**2)
    laser_frames, laser_mw, target = _control(run_dir / CONTROL_NAME)
    raw = _last_raw_frame(run_dir, px)
    image = _network_image(run_dir)
    return RecordedRun(
        run_dir, locs, stats, px, shape, laser_frames, laser_mw, target, raw, model, image
    )


def _network_image(run_dir: Path) -> SrImage | None:
    """The network's own image (``sr_image.tif``), its pixel size and frames, if readable."""
    path = run_dir / SR_IMAGE_NAME
    if not path.is_file():
        return None
    try:
        image = read_sr_image(path)
    except LiveDecodeError as exc:
        log.warning("%s (the localizations are shown instead)", exc)
        return None
    if not image.pixel_nm > 0:
        log.warning("%s does not give its pixel size: not shown", path)
        return None
    return image


def frame_stats(locs: Localizations, n_frames: int, fov_nm2: float | None) -> list[FrameStats]:
    """Per-frame count, density (µm⁻², NaN without a field of view) and means, frames 0..n-1."""
    if n_frames == 0:
        return []
    frame = locs["frame"].astype(np.int64)
    count = np.bincount(frame, minlength=n_frames)

    def mean(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        finite = np.isfinite(values)
        total = np.bincount(frame[finite], values[finite], minlength=n_frames)
        n = np.bincount(frame[finite], minlength=n_frames)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    photons, bg = mean(locs["photons"]), mean(locs["bg"])
    sigma = mean(np.maximum(locs["sigma_x_nm"], locs["sigma_y_nm"]))
    area_um2 = fov_nm2 / 1e6 if fov_nm2 else None
    return [
        FrameStats(
            f,
            int(count[f]),
            float(count[f] / area_um2) if area_um2 else float("nan"),
            float(photons[f]),
            float(bg[f]),
            float(sigma[f]),
        )
        for f in range(n_frames)
    ]


def _sidecar(path: Path) -> tuple[int | None, tuple[int, int] | None, float | None, str]:
    """(frames, (height, width) px, pixel size nm, model line) from Picasso's sidecar."""
    if not path.is_file():
        return None, None, None, ""
    import yaml

    try:
        with path.open(encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]
    except (OSError, yaml.YAMLError) as exc:
        log.warning("%s cannot be read (%s): frame size and pixel size unknown", path, exc)
        return None, None, None, ""
    info: dict[str, object] = {}
    for doc in docs:
        info.update(doc)
    frames, height, width, px, model = (
        info.get(k) for k in ("Frames", "Height", "Width", "Pixelsize", "model")
    )
    shape = (height, width) if isinstance(height, int) and isinstance(width, int) else None
    return (
        frames if isinstance(frames, int) else None,
        shape,
        float(px) if isinstance(px, int | float) and px > 0 else None,
        model if isinstance(model, str) else "",
    )


def _control(
    path: Path,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float | None]:
    """(frames, laser mW, last target) from ``control.csv``; empty without it."""
    empty = np.empty(0, np.float64)
    if not path.is_file():
        return empty, empty, None
    frames, power, target = [], [], None
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                frame, mw = float(row["frame"]), float(row["actuator_value"] or "nan")
            except (KeyError, ValueError):
                continue
            frames.append(frame)
            power.append(mw)
            if row.get("target_per_um2"):
                target = float(row["target_per_um2"])
    return np.asarray(frames, np.float64), np.asarray(power, np.float64), target


def _last_raw_frame(run_dir: Path, pixel_size_nm: float) -> PreviewFrame | None:
    """The last frame of the first ``raw*.tif`` movie in the run directory, if there is one."""
    movies = sorted(run_dir.glob(RAW_GLOB))
    if not movies:
        return None
    import tifffile

    try:
        with tifffile.TiffFile(movies[0]) as tif:
            series = tif.series[0]
            pages = len(series.pages)
            page = series.pages[pages - 1]
            if page is None:
                return None
            pixels = page.asarray()
    except (OSError, ValueError, IndexError) as exc:
        log.warning("%s cannot be read (%s): no raw frame shown", movies[0], exc)
        return None
    if pixels.ndim != 2:
        return None
    return PreviewFrame(pages - 1, np.array(pixels), pixel_size_nm, received=1)  # page i: frame i
