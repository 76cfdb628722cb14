"""The worker's core without sockets: ordered frame/gap/eos messages → localizations + stats."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from live_decode.inference.ring import FeatureRing, Window
from live_decode.inference.stats import frame_stats
from live_decode.messages import (
    EosMsg,
    FrameMsg,
    FrameStats,
    GapMsg,
    Localizations,
    Message,
    empty_locs,
)
from live_decode.model.seam import NetworkLocalizer


class LocSink(Protocol):
    """Where localizations are written (files); ``append`` must flush."""

    def append(self, locs: Localizations) -> None: ...

    def close(self) -> None: ...


@dataclass
class BatchResult:
    """What one call of :meth:`StreamProcessor.process` produced."""

    locs: Localizations
    stats: list[FrameStats]
    timestamps_ns: list[int] = field(default_factory=list)
    finished: bool = False
    image: np.ndarray | None = None  # the batch's super-resolution tiles summed (H·u, W·u)


class StreamProcessor:
    """Keeps the feature ring across calls; runs the network in batches over whatever arrived."""

    def __init__(self, localizer: NetworkLocalizer, sinks: Sequence[LocSink] = ()) -> None:
        self.localizer = localizer
        self.sinks = list(sinks)
        self.ring = FeatureRing()
        self.shape_px: tuple[int, int] | None = None
        self.frames_processed = 0
        self.n_locs = 0

    def _features(self, frames: list[FrameMsg]) -> torch.Tensor:
        loc = self.localizer
        if len({_calibration(f) for f in frames}) == 1:
            stack = np.stack([f.pixels for f in frames])
            return loc.features(loc.to_input(stack, frames[0].camera))
        return torch.cat([loc.features(loc.to_input(f.pixels[None], f.camera)) for f in frames])

    def process(self, messages: Sequence[Message]) -> BatchResult:
        """Process messages in order. Frames must all have the stream's (H, W)."""
        frames = [m for m in messages if isinstance(m, FrameMsg)]
        for f in frames:
            shape = (int(f.pixels.shape[0]), int(f.pixels.shape[1]))
            if self.shape_px is None:
                self.shape_px = shape
            elif shape != self.shape_px:
                raise ValueError(f"frame {f.index} is {shape}, the stream is {self.shape_px}")
        feats = self._features(frames) if frames else None
        windows: list[Window] = []
        finished = False
        k = 0
        for m in messages:
            if isinstance(m, FrameMsg):
                assert feats is not None
                windows.extend(self.ring.push(m.index, m.timestamp_ns, feats[k]))
                k += 1
            elif isinstance(m, GapMsg):
                windows.extend(self.ring.break_context())
            elif isinstance(m, EosMsg):
                windows.extend(self.ring.break_context())
                finished = True
        return self._emit(windows, finished)

    def _emit(self, windows: list[Window], finished: bool) -> BatchResult:
        if not windows or self.shape_px is None:
            return BatchResult(empty_locs(), [], [], finished)
        out = self.localizer.outputs(
            torch.stack([w.prev for w in windows]),
            torch.stack([w.cur for w in windows]),
            torch.stack([w.next for w in windows]),
            self.shape_px,
        )
        indices = np.array([w.index for w in windows], dtype=np.int64)
        locs = self.localizer.localize(out, indices)
        for sink in self.sinks:
            sink.append(locs)
        stats = frame_stats(locs, indices.tolist(), self.shape_px, self.localizer.pixel_size_nm)
        self.frames_processed += len(windows)
        self.n_locs += len(locs)
        tiles = self.localizer.image(out)
        image = None
        if tiles is not None:
            image = tiles.sum(0).float().cpu().numpy()
        return BatchResult(locs, stats, [w.timestamp_ns for w in windows], finished, image)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _calibration(frame: FrameMsg) -> tuple[float, ...]:
    c = frame.camera
    return (c.baseline_adu, c.e_per_adu, c.em_gain, c.qe, c.spurious_charge_e)
