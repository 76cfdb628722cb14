"""The model-mismatch alarm beside the worker: a thread that never holds the worker up.

The worker hands over frames and their localizations after each batch (:meth:`MismatchWatch.
offer_frames`, :meth:`MismatchWatch.offer_locs`); a frame is taken at most
``max_rate_hz`` times a second (its pixels copied), the rest are skipped, and a full queue drops
instead of waiting. The thread first calibrates the band on frames simulated from the card
(:func:`live_decode.quality.mismatch.calibrate_from_config`, ~1 s), then computes each taken
frame's χ²/px with the card's PSF and the camera calibration the frames report. State changes come
back as :class:`~live_decode.quality.mismatch.MismatchEvent` through :meth:`events`, for the
worker's own thread to publish (ZeroMQ sockets are not shared across threads).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from live_decode.config import CameraConfig, Config
from live_decode.messages import CameraMeta, FrameMsg, Localizations
from live_decode.quality.mismatch import (
    MismatchAlarm,
    MismatchEvent,
    ResidualModel,
    calibrate_band,
    calibration_values,
)

log = logging.getLogger("live_decode.inference.mismatch_watch")


@dataclass(frozen=True)
class _Frame:
    """A frame taken for the residual: pixels (H, W) in ADU, its camera, its localizations."""

    index: int
    pixels: npt.NDArray[np.float64]
    camera: CameraMeta
    locs: Localizations


def camera_from_meta(meta: CameraMeta, fallback: CameraConfig) -> CameraConfig:
    """The calibration the frames report (what the worker converts with), gaps from the card."""
    em = meta.em_gain > 1.0
    return CameraConfig(
        kind="emccd" if em else "scmos",
        pixel_size_nm=meta.pixel_size_nm,
        qe=meta.qe,
        baseline_adu=meta.baseline_adu,
        e_per_adu=meta.e_per_adu,
        em_gain=meta.em_gain if em else 1.0,
        read_noise_e=meta.read_noise_e if meta.read_noise_e > 0 else fallback.read_noise_e,
        spurious_charge_e=meta.spurious_charge_e,
        max_adu=fallback.max_adu,
    )


class MismatchWatch:
    """Background χ²/px of the card's forward model on a sample of the live frames."""

    def __init__(self, card_config: Config, max_rate_hz: float = 5.0, queue_size: int = 8) -> None:
        self.card_config = card_config
        self.min_interval_s = 1.0 / max_rate_hz
        self._queue: queue.Queue[_Frame | None] = queue.Queue(maxsize=queue_size)  # None: stop
        self._events: queue.Queue[MismatchEvent] = queue.Queue()
        self._pending: dict[int, tuple[npt.NDArray[np.float64], CameraMeta]] = {}
        self._last_taken = -1e9
        self.alarm: MismatchAlarm | None = None
        self.dropped = 0
        self.failed: str | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mismatch-watch", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ worker side (cheap)
    def offer_frames(self, frames: list[FrameMsg]) -> None:
        """Take (copy) at most one frame per ``1/max_rate_hz`` s of the batch's frames."""
        now = time.perf_counter()
        if self.failed is not None or now - self._last_taken < self.min_interval_s:
            return
        for f in frames:
            self._pending[f.index] = (np.array(f.pixels, dtype=np.float64), f.camera)
            self._last_taken = now
            break

    def offer_locs(self, locs: Localizations, last_frame: int) -> None:
        """The localizations of frames up to ``last_frame``: queue the pending frames they cover."""
        for index in [i for i in self._pending if i <= last_frame]:
            pixels, camera = self._pending.pop(index)
            rows = locs[locs["frame"] == index] if len(locs) else locs
            item = _Frame(index, pixels, camera, np.array(rows))
            try:
                self._queue.put_nowait(item)
            except queue.Full:
                self.dropped += 1

    def events(self) -> list[MismatchEvent]:
        """State changes since the last call."""
        out = []
        while True:
            try:
                out.append(self._events.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the thread (what is queued is dropped; a calibration stops within a frame).

        It must end before the process does: torch work in a thread at interpreter exit aborts.
        """
        self._closing.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)

    def summary(self) -> dict[str, Any]:
        """For the run summary: band, running value, when it first fired, frames looked at."""
        a = self.alarm
        if a is None:
            return {"enabled": self.failed is None, "error": self.failed}
        return {
            "enabled": True,
            "alarm": a.first_raised_frame is not None,
            "active": a.active,
            "first_alarm_frame": a.first_raised_frame,
            "running_chi2_per_px": a.running,
            "band": asdict(a.band),
            "frames_evaluated": a.frames_seen,
            "frames_in_alarm": a.frames_in_alarm,
            "frames_dropped": self.dropped,
        }

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            values = []
            for v in calibration_values(self.card_config):
                if self._closing.is_set():
                    return
                values.append(v)
            band = calibrate_band(values)
            psf_model = ResidualModel.from_config(self.card_config)
        except Exception as exc:  # any failure turns the alarm off; logged and in the summary
            self.failed = f"mismatch calibration failed: {exc}"
            log.warning("%s; the model-mismatch alarm is off", self.failed)
            return
        self.alarm = MismatchAlarm(band)
        log.info("mismatch band χ²/px [%.3f, %.3f]", band.lo, band.hi)
        models: dict[tuple[float, ...], ResidualModel] = {}
        while not self._closing.is_set():
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                return
            meta, rows = item.camera, item.locs
            key = (
                meta.pixel_size_nm,
                meta.baseline_adu,
                meta.e_per_adu,
                meta.em_gain,
                meta.qe,
                meta.read_noise_e,
                meta.spurious_charge_e,
            )
            model = models.get(key)
            if model is None:
                camera = camera_from_meta(meta, self.card_config.camera)
                model = models.setdefault(key, ResidualModel(psf_model.psf, camera))
            value = model.chi2_per_px(
                item.pixels, rows["x_nm"], rows["y_nm"], rows["z_nm"], rows["photons"]
            )
            event = self.alarm.update(item.index, value)
            if event is not None:
                self._events.put(event)
