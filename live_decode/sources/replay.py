"""Replay a recorded movie (TIFF / OME-TIFF, one file or a multi-file series) as a frame source.

Frames are memory-mapped where the file allows it (uncompressed, contiguous), else read page by
page, so a movie larger than memory replays fine. Camera metadata comes from the OME-XML /
live_decode description written by ``live-decode simulate`` when present, else from the config.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from live_decode.errors import MovieError
from live_decode.messages import FRAME_DTYPES, CameraMeta
from live_decode.sources.base import SourceFrame

log = logging.getLogger("live_decode.sources.replay")


class _TiffMovie:
    """One TIFF file as a (T, H, W) frame store: memory-mapped, or paged when compressed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise MovieError(f"{path}: movie file not found; check the path")
        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises many types on corrupt files
            raise MovieError(
                f"{path}: cannot read this TIFF ({exc}); is the file complete and a TIFF?"
            ) from None
        try:
            self._inspect()
        except MovieError:
            self._tif.close()  # no open file left behind by a rejected movie
            raise

    def _inspect(self) -> None:
        path = self.path
        try:
            series = self._tif.series[0]
            self.shape = tuple(int(s) for s in series.shape)
            self.dtype = np.dtype(series.dtype)
            first = self._tif.pages.first if self._tif.pages else None
            self.description = str(getattr(first, "description", "") or "")
            self.ome = self._tif.ome_metadata
        except Exception as exc:  # tifffile raises many types on corrupt files
            raise MovieError(
                f"{path}: cannot read this TIFF ({exc}); is the file complete and a TIFF?"
            ) from None
        if len(self.shape) == 2:
            self.shape = (1, *self.shape)
        if len(self.shape) != 3:
            raise MovieError(
                f"{path}: expected a stack of 2-D frames (T, H, W), got shape {self.shape}; "
                "export a single channel, single z-plane movie"
            )
        if self.dtype.name not in FRAME_DTYPES:
            raise MovieError(
                f"{path}: pixel type {self.dtype} is not supported; use one of "
                f"{sorted(FRAME_DTYPES)} (camera ADU)"
            )
        self._map: npt.NDArray[Any] | None = None
        try:
            self._map = tifffile.memmap(path, mode="r").reshape(self.shape)
        except Exception:  # compressed or non-contiguous: read page by page
            self._map = None
        n_pages = len(self._tif.pages)
        if self._map is None and n_pages < self.shape[0]:
            raise MovieError(
                f"{path}: truncated: {n_pages} of {self.shape[0]} frames present; "
                "copy or export the movie again"
            )

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, i: int) -> npt.NDArray[Any]:
        if self._map is not None:
            return np.asarray(self._map[i])
        try:
            return np.asarray(self._tif.pages[i].asarray()).reshape(self.shape[1:])
        except Exception as exc:
            raise MovieError(
                f"{self.path}: frame {i} cannot be read ({exc}); the file is truncated or "
                "corrupt: copy or export the movie again"
            ) from None

    def close(self) -> None:
        self._map = None
        self._tif.close()


def camera_from_tiff(description: str, ome: str | None) -> dict[str, float]:
    """Camera metadata that ``live-decode simulate`` stores (JSON in the OME ``Description``).

    Returns an empty dict for files from other software; the config then supplies the camera.
    """
    texts = [description or ""]
    if ome:
        texts += [
            html.unescape(m)
            for m in re.findall(r"<Description>(.*?)</Description>", ome, flags=re.S)
        ]
    for text in texts:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            continue
        camera = data.get("live_decode", {}).get("camera") if isinstance(data, dict) else None
        if isinstance(camera, dict):
            out = {k: float(v) for k, v in camera.items() if isinstance(v, int | float)}
            interval = data["live_decode"].get("frame_interval_ms")
            if isinstance(interval, int | float):
                out["frame_interval_ms"] = float(interval)
            return out
    return {}


class ReplaySource:
    """Replays frames [start, stop) of one or more TIFF files, optionally looping."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        camera: CameraMeta,
        start: int = 0,
        stop: int | None = None,
        loop: bool = False,
        fps: float | None = None,
        prefer_file_metadata: bool = True,
    ) -> None:
        if not paths:
            raise MovieError("no movie file given")
        self._movies: list[_TiffMovie] = []
        try:
            for p in paths:
                self._movies.append(_TiffMovie(Path(p)))
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
        stored = camera_from_tiff(self._movies[0].description, self._movies[0].ome)
        if stored and prefer_file_metadata:
            fields: dict[str, float] = {
                k: stored[k]
                for k in (
                    "pixel_size_nm",
                    "baseline_adu",
                    "e_per_adu",
                    "em_gain",
                    "qe",
                    "exposure_ms",
                    "spurious_charge_e",
                    "read_noise_e",
                )
                if k in stored
            }
            camera = CameraMeta(**{**_meta_dict(camera), **fields})
        self._camera = camera
        interval = 1000.0 / fps if fps else stored.get("frame_interval_ms", camera.exposure_ms)
        self._interval_ms = float(interval)
        self._next = self.start
        self._count = 0

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

    def read(self) -> SourceFrame | None:
        if self._next >= self.stop:
            if not self.loop:
                return None
            self._next = self.start
        i = self._next
        f = int(np.searchsorted(self._offsets, i, side="right") - 1)
        pixels = self._movies[f].frame(i - int(self._offsets[f]))
        frame = SourceFrame(index=self._count, timestamp_ns=time.time_ns(), pixels=pixels)
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
