"""Replay a recorded movie (TIFF / OME-TIFF, one file or a multi-file series) as a frame source.

Frames are memory-mapped where the file allows it, else read page by page
(:class:`~live_decode.io.movie.TiffMovie`), so a movie larger than memory replays fine.

Calibration: what the first file says about its camera (:mod:`live_decode.io.calibration`: this
project's metadata, OME ``PhysicalSizeX``, Micro-Manager, ImageJ) wins over the config's
defaults; a value the config sets explicitly that contradicts the file is refused with both
values named. :attr:`ReplaySource.calibration` keeps every value with its source. A raw
recording of a live run keeps its camera frame indices, and its replay announces the same gaps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from live_decode.config import Config
from live_decode.errors import ConfigError, MovieError
from live_decode.io.calibration import (
    CAMERA_KEYS,
    FRAME_INTERVAL_KEY,
    Calibration,
    read_calibration,
)
from live_decode.io.movie import TiffMovie, camera_from_tiff
from live_decode.messages import CameraMeta, GapMsg
from live_decode.sources.base import SourceFrame

__all__ = ["ReplaySource", "camera_from_tiff", "card_camera_label", "explicit_camera_keys"]

log = logging.getLogger("live_decode.sources.replay")

CONTRADICTION_TOLERANCE = 0.01  # relative: unit conversions of one value agree to this
DEMO_LABEL = "default (demo camera)"
_CAMERA_FIELDS = {  # CameraMeta field -> the config fields that set it
    "pixel_size_nm": ("pixel_size_nm",),
    "baseline_adu": ("baseline_adu",),
    "e_per_adu": ("e_per_adu",),
    "em_gain": ("em_gain", "kind"),
    "qe": ("qe",),
    "spurious_charge_e": ("spurious_charge_e",),
    "read_noise_e": ("read_noise_e",),
}


def card_camera_label(model_name: str) -> str:
    """The source label of a camera value taken from a model card (no file value, no config)."""
    return f"model card '{model_name}' camera"


def explicit_camera_keys(cfg: Config, label: str) -> dict[str, str]:
    """The camera values ``cfg`` states itself (not pydantic defaults), with their source label.

    ``label`` names the config (its file); a key maps to e.g. ``"config x.yaml camera.qe"``.
    """
    out: dict[str, str] = {}
    if "camera" in cfg.model_fields_set:
        given = cfg.camera.model_fields_set
        for key, names in _CAMERA_FIELDS.items():
            hit = next((n for n in names if n in given), None)
            if hit is not None:
                out[key] = f"config {label} camera.{hit}"
    if "microscope" in cfg.model_fields_set and "exposure_ms" in cfg.microscope.model_fields_set:
        out["exposure_ms"] = f"config {label} microscope.exposure_ms"
    return out


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > CONTRADICTION_TOLERANCE * max(abs(a), abs(b), 1e-12)


class ReplaySource:
    """Replays frames [start, stop) of one or more TIFF files, optionally looping.

    Parameters
    ----------
    camera
        The camera the config describes; the file's own calibration replaces its values.
    config_keys
        Camera values the user's config states explicitly (:func:`explicit_camera_keys`): a
        file that contradicts one of them is refused. None: ``camera`` is a stand-in (the demo
        camera, or the camera the model was trained for) and every value the file lacks is
        reported loudly as ``fallback_label`` 's.
    fallback_label
        Where ``camera`` came from when ``config_keys`` is None, e.g. ``"model card 'x'
        camera"``; kept in :attr:`calibration` and named in the warning.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        camera: CameraMeta,
        start: int = 0,
        stop: int | None = None,
        loop: bool = False,
        fps: float | None = None,
        prefer_file_metadata: bool = True,
        config_keys: Mapping[str, str] | None = None,
        default_label: str = "config",
        fallback_label: str = DEMO_LABEL,
    ) -> None:
        if not paths:
            raise MovieError("no movie file given")
        self._movies: list[TiffMovie] = []
        try:
            for p in paths:
                self._movies.append(TiffMovie(Path(p)))
        except MovieError:
            self.close()  # the files opened before the bad one
            raise
        shapes = {m.shape[1:] for m in self._movies}
        if len(shapes) != 1:
            sizes = ", ".join(f"{m.path}: {m.shape[1]}×{m.shape[2]}" for m in self._movies)
            self.close()
            raise MovieError(
                f"the files of a series must share the frame size, got {sizes}; "
                "replay them separately"
            )
        self._offsets = np.cumsum([0] + [len(m) for m in self._movies])
        total = int(self._offsets[-1])
        self.start, self.stop = start, total if stop is None else min(stop, total)
        if not 0 <= self.start < self.stop:
            self.close()
            raise MovieError(f"frame range [{start}, {stop}) is empty for a {total}-frame movie")
        self.loop = loop
        try:
            self.calibration = self._calibrate(
                camera, prefer_file_metadata, config_keys, default_label, fallback_label
            )
        except ConfigError:
            self.close()
            raise
        self._camera = CameraMeta(**self.calibration.values, extra=dict(camera.extra))
        recorded = self._file_calibration.values.get(FRAME_INTERVAL_KEY, camera.exposure_ms)
        self._interval_ms = float(1000.0 / fps if fps else recorded)
        self._indices = None if loop else self._recorded_indices()
        self._gaps: list[GapMsg] = []
        self._last_index: int | None = None
        self._next = self.start
        self._count = 0

    def _calibrate(
        self,
        camera: CameraMeta,
        prefer_file: bool,
        config_keys: Mapping[str, str] | None,
        default_label: str,
        fallback_label: str,
    ) -> Calibration:
        """The camera values to use, each with its source; refuse a contradicting config."""
        first = self._movies[0]
        from_file = read_calibration(first.tif, first.description) if prefer_file else Calibration()
        self._file_calibration = from_file
        base = _meta_dict(camera)
        explicit = dict(config_keys or {})
        cal, clashes = Calibration(), []
        for key in CAMERA_KEYS:
            if key in from_file.values:
                value, source = from_file.values[key], from_file.sources[key]
                if key in explicit and _differs(value, float(base[key])):
                    clashes.append(
                        f"  {key}: the file says {value:g} ({source}), the config says "
                        f"{float(base[key]):g} ({explicit[key]})"
                    )
                cal.set(key, value, source)
            else:
                label = explicit.get(key, fallback_label if config_keys is None else default_label)
                cal.set(key, float(base[key]), label)
        if clashes:
            raise ConfigError(
                f"{first.path}: the movie's calibration contradicts the config:\n"
                + "\n".join(clashes)
                + "\nRemove these values from the config to use the file's, or correct the "
                "file's metadata if the config is right."
            )
        assumed = [k for k in CAMERA_KEYS if cal.sources[k] == fallback_label]
        if assumed:
            log.warning(
                "%s: the file does not say its %s and no --config was given: using the %s (%s). "
                "If this is not your camera, measure it: `live-decode calibrate %s --out setup/`, "
                "then pass --config setup/setup.yaml.",
                first.path,
                ", ".join(assumed),
                fallback_label,
                ", ".join(f"{k} {cal.values[k]:g}" for k in assumed),
                first.path,
            )
        return cal

    def _recorded_indices(self) -> npt.NDArray[np.int64] | None:
        """Camera frame indices of every file's frames, when all files record them."""
        parts = []
        for m in self._movies:
            runs = m.frame_runs
            if runs is None:
                return None
            parts += [np.arange(a, a + c, dtype=np.int64) for a, c in runs]
        indices = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if len(indices) > 1 and np.any(np.diff(indices) <= 0):
            return None  # a series of separate recordings: count frames instead
        return indices

    @property
    def camera(self) -> CameraMeta:
        return self._camera

    @property
    def shape_px(self) -> tuple[int, int]:
        h, w = self._movies[0].shape[1:]
        return (int(h), int(w))

    @property
    def live(self) -> bool:
        return False

    @property
    def frame_interval_ms(self) -> float:
        return self._interval_ms

    @property
    def n_frames(self) -> int:
        return self.stop - self.start

    @property
    def frame_indices(self) -> npt.NDArray[np.int64]:
        """(n_frames,) camera frame index of each frame of [start, stop), as :meth:`read` numbers
        them without looping (recorded indices, else counted from 0)."""
        if self._indices is None:
            return np.arange(self.n_frames, dtype=np.int64)
        return self._indices[self.start : self.stop].copy()

    @property
    def file_offsets(self) -> npt.NDArray[np.int64]:
        """(files + 1,) position in the series of each file's first frame, then the total."""
        return self._offsets.astype(np.int64)

    def take_gaps(self) -> list[GapMsg]:
        """Gaps between the recorded camera frame indices, announced before the next frame."""
        out, self._gaps = self._gaps, []
        return out

    def read(self) -> SourceFrame | None:
        if self._next >= self.stop:
            if not self.loop:
                return None
            self._next = self.start
        i = self._next
        f = int(np.searchsorted(self._offsets, i, side="right") - 1)
        pixels = self._movies[f].frame(i - int(self._offsets[f]))
        index = self._count if self._indices is None else int(self._indices[i])
        if self._indices is not None and self._last_index is not None:
            missing = index - self._last_index - 1
            if missing > 0:
                self._gaps.append(GapMsg(first=self._last_index + 1, count=missing))
        self._last_index = index
        frame = SourceFrame(index=index, timestamp_ns=time.time_ns(), pixels=pixels)
        self._next += 1
        self._count += 1
        return frame

    def close(self) -> None:
        for m in self._movies:
            m.close()


def _meta_dict(camera: CameraMeta) -> dict[str, Any]:
    return {
        "pixel_size_nm": camera.pixel_size_nm,
        "baseline_adu": camera.baseline_adu,
        "e_per_adu": camera.e_per_adu,
        "em_gain": camera.em_gain,
        "qe": camera.qe,
        "exposure_ms": camera.exposure_ms,
        "spurious_charge_e": camera.spurious_charge_e,
        "read_noise_e": camera.read_noise_e,
    }
