"""The movie format: (T, H, W) camera frames in OME-TIFF, with the camera metadata to read back.

Written by ``live-decode simulate`` (:func:`write_movie`) and by ``run``'s raw recording
(:class:`MovieRecorder`, frame by frame, BigTIFF); read by the replay source and ``localize``
(:class:`TiffMovie`, any TIFF / OME-TIFF / ImageJ TIFF).

What a file carries:

- OME ``Pixels``: ``PhysicalSizeX/Y`` (µm) and ``TimeIncrement`` (ms);
- a ``MapAnnotation`` with namespace :data:`CAMERA_NAMESPACE`: the camera (kind, pixel_size_nm,
  baseline_adu, e_per_adu, em_gain, qe, read_noise_e, spurious_charge_e, exposure_ms, ...);
- the ``Image`` ``Description``, JSON: ``{"live_decode": {"camera": {...},
  "frame_interval_ms": ..., "frames": [[first_index, count], ...], ...}}``. ``frames`` lists the
  runs of camera frame indices the file holds (a live recording keeps the indices, so a replay
  announces the same gaps the live worker saw).

Calibration of files from other software comes from their own metadata
(:mod:`live_decode.io.calibration`).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from live_decode.errors import MovieError
from live_decode.messages import FRAME_DTYPES

log = logging.getLogger("live_decode.io.movie")

RAW_NAME = "raw.ome.tif"
"""The frames a live run acquired, in its run directory."""
CAMERA_NAMESPACE = "live_decode.camera"
"""Namespace of the OME ``MapAnnotation`` that holds the camera metadata."""
BIGTIFF_BYTES = 2**31  # classic TIFF offsets are 32-bit: switch to BigTIFF well before 4 GiB
CHUNK_FRAMES = 16  # frames per TIFF write: one call per frame costs ~0.6 ms, per 16 ~0.05 ms/frame
FLUSH_S = 1.0  # ... and buffered frames wait at most this long (a slow camera loses no more)
_PLACEHOLDER = "live_decode raw recording, unfinished (the OME-XML is written when it closes)"

FrameRuns = list[tuple[int, int]]
"""Runs ``(first_index, count)`` of consecutive camera frame indices."""


def ome_metadata(
    camera: Mapping[str, object],
    frame_interval_ms: float,
    extra: Mapping[str, object] | None = None,
    frames: FrameRuns | None = None,
) -> dict[str, Any]:
    """tifffile OME metadata for a (T, Y, X) movie with ``camera`` (needs ``pixel_size_nm``)."""
    pixel_um = float(camera["pixel_size_nm"]) / 1000.0  # type: ignore[arg-type]
    description: dict[str, object] = {
        "camera": dict(camera),
        "frame_interval_ms": frame_interval_ms,
        **(extra or {}),
    }
    if frames is not None:
        description["frames"] = [list(r) for r in frames]
    return {
        "axes": "TYX",
        "PhysicalSizeX": pixel_um,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": pixel_um,
        "PhysicalSizeYUnit": "µm",
        "TimeIncrement": frame_interval_ms,
        "TimeIncrementUnit": "ms",
        "Description": json.dumps({"live_decode": description}, allow_nan=False),
        "MapAnnotation": {
            "Namespace": CAMERA_NAMESPACE,
            "Value": {key: str(value) for key, value in camera.items()},
        },
    }


def write_movie(
    path: Path,
    frames: Iterable[npt.NDArray[np.uint16]],
    n_frames: int,
    shape_px: tuple[int, int],
    camera: Mapping[str, object],
    frame_interval_ms: float,
    extra: Mapping[str, object] | None = None,
) -> None:
    """Stream ``n_frames`` frames, each (H, W) uint16 ADU, into a single-series OME-TIFF."""
    h, w = shape_px
    metadata = ome_metadata(camera, frame_interval_ms, extra)
    bigtiff = n_frames * h * w * 2 >= BIGTIFF_BYTES
    with tifffile.TiffWriter(path, bigtiff=bigtiff, ome=True) as tif:
        tif.write(
            iter(frames),
            shape=(n_frames, h, w),
            dtype=np.uint16,
            photometric="minisblack",
            metadata=metadata,
        )


def add_to_runs(runs: FrameRuns, index: int) -> None:
    """Append camera frame ``index`` to ``runs`` (extends the last run when consecutive)."""
    if runs and runs[-1][0] + runs[-1][1] == index:
        runs[-1] = (runs[-1][0], runs[-1][1] + 1)
    else:
        runs.append((index, 1))


class MovieRecorder:
    """Appends frames to a BigTIFF as they arrive; the OME-XML is written on :meth:`close`.

    Each frame is its own TIFF page; pages are written in chunks of :data:`CHUNK_FRAMES` (or
    after :data:`FLUSH_S`), so a recording cut short by a crash is still a readable multi-page
    TIFF (without the OME metadata) missing at most one chunk. Frame indices are kept as runs
    (:data:`FrameRuns`), so gaps of a live acquisition are in the file.
    """

    def __init__(
        self,
        path: Path,
        camera: Mapping[str, object],
        frame_interval_ms: float,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self.path = path
        self.camera = dict(camera)
        self.frame_interval_ms = frame_interval_ms
        self.extra = dict(extra or {})
        self.runs: FrameRuns = []
        self.n_frames = 0
        self._shape: tuple[int, ...] | None = None
        self._dtype: np.dtype[Any] | None = None
        self._chunk: list[npt.NDArray[Any]] = []
        self._chunk_since = 0.0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tif: tifffile.TiffWriter | None = tifffile.TiffWriter(path, bigtiff=True)

    def append(self, pixels: npt.NDArray[Any], index: int) -> None:
        """Write one (H, W) frame of camera frame ``index`` (indices increase)."""
        if self._tif is None:
            raise MovieError(f"{self.path}: the recording is closed")
        if self._shape is None:
            self._shape, self._dtype = pixels.shape, pixels.dtype
        elif pixels.shape != self._shape or pixels.dtype != self._dtype:
            raise MovieError(
                f"{self.path}: frame {index} is {pixels.shape} {pixels.dtype}, the recording "
                f"is {self._shape} {self._dtype}; one recording holds one frame size"
            )
        if not self._chunk:
            self._chunk_since = time.monotonic()
        self._chunk.append(np.array(pixels, copy=True))  # a camera may reuse its buffer
        self.n_frames += 1
        add_to_runs(self.runs, index)
        if len(self._chunk) >= CHUNK_FRAMES or time.monotonic() - self._chunk_since > FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the buffered frames as pages."""
        if self._tif is None or not self._chunk:
            return
        first = self.n_frames == len(self._chunk)
        self._tif.write(
            np.stack(self._chunk),
            contiguous=False,
            metadata=None,
            description=_PLACEHOLDER if first else None,
            photometric="minisblack",
        )
        self._chunk = []

    def close(self) -> None:
        """Finish the file: write the OME-XML (pixel size, camera, frame indices)."""
        if self._tif is None:
            return
        self.flush()
        self._tif.close()
        self._tif = None
        if self._shape is None or self._dtype is None:
            self.path.unlink(missing_ok=True)  # no frame: no file
            return
        h, w = self._shape
        metadata = ome_metadata(self.camera, self.frame_interval_ms, self.extra, self.runs)
        ome = tifffile.OmeXml()
        n = self.n_frames
        ome.addimage(self._dtype, (n, h, w), (n, 1, 1, h, w, 1), **metadata)
        tifffile.tiffcomment(self.path, ome.tostring(declaration=True).encode("utf-8"))


def _page_chain_cut(tif: tifffile.TiffFile) -> int | None:
    """Where the last readable page says the next one is, when that is past the end of the file
    (a file cut short: tifffile then silently lists only the pages before the cut)."""
    try:
        fmt = tif.tiff
        fh = tif.filehandle
        last = tif.pages[len(tif.pages) - 1]
        fh.seek(last.offset)
        (n_tags,) = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))
        fh.seek(last.offset + fmt.tagnosize + n_tags * fmt.tagsize)
        (next_offset,) = struct.unpack(fmt.offsetformat, fh.read(fmt.offsetsize))
    except (struct.error, OSError, IndexError, AttributeError, TypeError):
        return None
    return int(next_offset) if next_offset >= fh.size else None


class TiffMovie:
    """One TIFF file as a (T, H, W) frame store: memory-mapped where possible, else paged.

    A file written in one block (``write_movie``, most software) is mapped with
    ``tifffile.memmap``; other uncompressed files (``MovieRecorder``'s chunks of pages) are
    mapped whole and each frame viewed at its page's offset; compressed files are read page by
    page.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise MovieError(f"{path}: movie file not found; check the path")
        try:
            self.tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile raises many types on corrupt files
            raise MovieError(
                f"{path}: cannot read this TIFF ({exc}); is the file complete and a TIFF?"
            ) from None
        try:
            self._inspect()
        except MovieError:
            self.tif.close()  # no open file left behind by a rejected movie
            raise

    def _inspect(self) -> None:
        path = self.path
        try:
            series = self.tif.series[0]
            self.shape = tuple(int(s) for s in series.shape)
            self.dtype = np.dtype(series.dtype)
            first = self.tif.pages.first if self.tif.pages else None
            self.description = str(getattr(first, "description", "") or "")
            self.ome = self.tif.ome_metadata
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
        self._file: np.memmap[Any, np.dtype[np.uint8]] | None = None
        try:
            self._map = tifffile.memmap(path, mode="r").reshape(self.shape)
        except Exception:  # not one contiguous block: map the file, find each page's data
            self._file = self._page_map()
        n_pages = len(self.tif.pages)
        if self._map is None and n_pages < self.shape[0]:
            raise MovieError(
                f"{path}: truncated: {n_pages} of {self.shape[0]} frames present; "
                "copy or export the movie again"
            )
        cut_at = _page_chain_cut(self.tif)
        if cut_at is not None:
            announced = (
                f"of {self.shape[0]} announced"
                if self.shape[0] > n_pages
                else "(the metadata that announces the frame count is cut off too)"
            )
            raise MovieError(
                f"{path}: truncated: {n_pages} frame(s) readable {announced}; the next frame "
                f"should start at byte {cut_at} but the file ends at {self.tif.filehandle.size}; "
                "copy or export the movie again"
            )

    def _page_map(self) -> np.memmap[Any, np.dtype[np.uint8]] | None:
        """The whole file mapped, when its pages are uncompressed single strips (else None).

        A frame is then a view at its page's data offset: no read, no decode.
        """
        first = self.tif.pages.first
        nbytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        if first.compression != 1 or len(first.dataoffsets) != 1:  # 1 = COMPRESSION.NONE
            return None
        if first.databytecounts[0] != nbytes:
            return None
        try:
            return np.memmap(self.path, dtype=np.uint8, mode="r")
        except (ValueError, OSError):
            return None

    @property
    def mapped(self) -> bool:
        """True when frames are views of the memory-mapped file."""
        return self._map is not None or self._file is not None

    @property
    def frame_runs(self) -> FrameRuns | None:
        """Camera frame indices this file records (``MovieRecorder``), else None."""
        data = live_decode_description(self.description, self.ome)
        runs = data.get("frames")
        if not isinstance(runs, list):
            return None
        try:
            out = [(int(a), int(b)) for a, b in runs]
        except (TypeError, ValueError):
            return None
        return out if sum(c for _, c in out) == self.shape[0] else None

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, i: int) -> npt.NDArray[Any]:
        """Frame ``i`` (H, W) in ADU; a read-only view of the file where it is mapped."""
        if self._map is not None:
            return np.asarray(self._map[i])
        try:
            page = self.tif.pages[i]
            if self._file is not None and len(page.dataoffsets) == 1:
                little = self.tif.byteorder == "<"
                return np.ndarray(
                    self.shape[1:],
                    dtype=self.dtype.newbyteorder("<" if little else ">"),
                    buffer=self._file,
                    offset=int(page.dataoffsets[0]),
                )
            return np.asarray(page.asarray()).reshape(self.shape[1:])
        except Exception as exc:
            raise MovieError(
                f"{self.path}: frame {i} cannot be read ({exc}); the file is truncated or "
                "corrupt: copy or export the movie again"
            ) from None

    def close(self) -> None:
        self._map = self._file = None
        self.tif.close()


def live_decode_description(description: str, ome: str | None) -> dict[str, Any]:
    """The ``live_decode`` JSON this project writes (first page or OME ``Description``)."""
    import html
    import re

    texts: Sequence[str] = [description or ""]
    if ome:
        texts = [
            *texts,
            *(
                html.unescape(m)
                for m in re.findall(r"<Description>(.*?)</Description>", ome, flags=re.S)
            ),
        ]
    for text in texts:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError):
            continue
        inner = data.get("live_decode") if isinstance(data, dict) else None
        if isinstance(inner, dict):
            return inner
    return {}


def camera_from_tiff(description: str, ome: str | None) -> dict[str, float]:
    """Camera metadata this project stores (JSON in the OME ``Description``), numbers only.

    Returns an empty dict for files from other software.
    """
    data = live_decode_description(description, ome)
    camera = data.get("camera")
    if not isinstance(camera, dict):
        return {}
    out = {k: float(v) for k, v in camera.items() if isinstance(v, int | float)}
    interval = data.get("frame_interval_ms")
    if isinstance(interval, int | float):
        out["frame_interval_ms"] = float(interval)
    return out
