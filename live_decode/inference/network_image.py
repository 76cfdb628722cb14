"""The image a network yields itself (Deep-STORM), over a run: summed, saved, published.

The worker hands every batch's summed density tiles to a :class:`NetworkImageKeeper`. It keeps
their sum (float64, so a day of frames loses no precision), writes it to ``sr_image.tif``
atomically every ``save_every_s`` and at the end (a worker killed without closing loses at most
that much of the image, never the file), and publishes it as an :class:`ImageMsg`: the whole
sum every ``publish_every_s`` and at the end. An image larger than ``max_wire_bytes`` travels
binned 2×2 (pixel sums, so densities still add up) until it fits; the file keeps full
resolution. A worker that replaces a dead one starts from the file its predecessor saved, and
counts the image's frames itself: after a crash they can be fewer than the frames localized.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from live_decode.errors import MovieError
from live_decode.io.sr_image import SR_IMAGE_NAME, read_sr_image, write_sr_image
from live_decode.messages import ImageMsg
from live_decode.transport.results import ResultPublisher

log = logging.getLogger("live_decode.inference.network_image")

MAX_WIRE_IMAGE_BYTES: Final = 4 << 20
"""Largest image sent as it is (1024² float32); larger ones are binned for the wire."""
WIRE_BYTES_PER_S: Final = 8 << 20
"""Publishing budget: a large image is published less often than ``publish_every_s``."""


def bin_for_wire(
    image: npt.NDArray[np.float32], pixel_nm: float, max_bytes: int = MAX_WIRE_IMAGE_BYTES
) -> tuple[npt.NDArray[np.float32], float]:
    """``image`` binned 2×2 (summed; an odd last row/column is padded with 0) until it takes
    at most ``max_bytes``, and its pixel size (nm)."""
    out = image
    while out.nbytes > max_bytes and min(out.shape) > 1:
        rows, cols = out.shape
        padded = np.zeros((rows + rows % 2, cols + cols % 2), np.float32)
        padded[:rows, :cols] = out
        out = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).sum(axis=(1, 3))
        pixel_nm *= 2
    return np.ascontiguousarray(out, dtype=np.float32), pixel_nm


class NetworkImageKeeper:
    """Sum, save and publish one run's network image (see the module docstring).

    Parameters
    ----------
    run_dir
        Where ``sr_image.tif`` goes.
    pixel_nm
        The image's pixel size (camera pixel / upsampling).
    run_id
        Identifies the run on the wire (its first worker's start, ns): a viewer's reset
        baseline belongs to one run.
    resume
        Start from the image a previous worker of this run saved.
    """

    def __init__(
        self,
        run_dir: Path,
        pixel_nm: float,
        run_id: int,
        *,
        resume: bool = False,
        publish_every_s: float = 0.5,
        save_every_s: float = 5.0,
        max_wire_bytes: int = MAX_WIRE_IMAGE_BYTES,
    ) -> None:
        self.path = run_dir / SR_IMAGE_NAME
        self.pixel_nm = pixel_nm
        self.run_id = run_id
        self.publish_every_s = publish_every_s
        self.save_every_s = save_every_s
        self.max_wire_bytes = max_wire_bytes
        self._sum: npt.NDArray[np.float64] | None = None
        self.frames = 0  # frames summed into the image, a predecessor's included
        self.last_frame: int | None = None
        self._published_at = -math.inf
        self._saved_at = time.perf_counter()
        self._unpublished = self._unsaved = False
        if resume:
            self._start_from_file()

    def _start_from_file(self) -> None:
        if not self.path.is_file():
            return
        try:
            before = read_sr_image(self.path)
        except MovieError as exc:
            log.warning("%s; the image starts afresh with this worker's frames", exc)
            return
        if before.frames is None:
            log.warning("%s does not say how many frames it holds: it is replaced", self.path)
            return
        self._sum = before.pixels.astype(np.float64)
        self.frames = before.frames
        log.info("the network image goes on from %s (%d frames)", self.path, self.frames)

    def add(self, tiles_sum: npt.NDArray[np.floating], frames: int, last_frame: int) -> None:
        """Add a batch: its ``frames`` tiles summed (H·u, W·u), the last frame's index."""
        if self._sum is not None and self._sum.shape != tiles_sum.shape:
            log.warning(
                "the saved image is %s px, this worker's %s: it is replaced",
                self._sum.shape,
                tiles_sum.shape,
            )
            self._sum, self.frames = None, 0
        batch = np.asarray(tiles_sum, np.float64)
        self._sum = batch.copy() if self._sum is None else self._sum + batch
        self.frames += frames
        self.last_frame = last_frame
        self._unpublished = self._unsaved = True

    def image(self) -> npt.NDArray[np.float32] | None:
        """The image so far (float32), or None before the first batch."""
        return None if self._sum is None else self._sum.astype(np.float32)

    def publish(self, publisher: ResultPublisher, *, force: bool = False) -> bool:
        """Publish the image if due (or ``force``) and changed since the last time."""
        now = time.perf_counter()
        if self._sum is None or self.last_frame is None or not self._unpublished:
            return False
        nbytes = self._sum.size * np.dtype(np.float32).itemsize  # what the image will take
        interval = max(self.publish_every_s, min(nbytes, self.max_wire_bytes) / WIRE_BYTES_PER_S)
        if not force and now - self._published_at < interval:
            return False
        image = self._sum.astype(np.float32)  # only now: not on every batch of the worker
        wire, pixel_nm = bin_for_wire(image, self.pixel_nm, self.max_wire_bytes)
        publisher.publish(ImageMsg(wire, pixel_nm, self.frames, self.last_frame, self.run_id))
        self._published_at, self._unpublished = now, False
        return True

    def save(self, *, force: bool = False) -> Path | None:
        """Write ``sr_image.tif`` (atomically) if due (or ``force``) and changed."""
        now = time.perf_counter()
        if self._sum is None or not self._unsaved or not self.path.parent.is_dir():
            return None
        if not force and now - self._saved_at < self.save_every_s:
            return None
        write_sr_image(self.path, self._sum.astype(np.float32), self.pixel_nm, self.frames)
        self._saved_at, self._unsaved = now, False
        return self.path
