"""A synthetic run on real loopback sockets: results + preview publishers, a recording source."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import zmq

from live_decode.endpoints import RunEndpoints
from live_decode.messages import (
    CameraMeta,
    FrameStats,
    HeartbeatMsg,
    Localizations,
    LocsMsg,
    WorkerStats,
    empty_locs,
)
from live_decode.transport.control import (
    ControlCommand,
    ControlMode,
    ControlReply,
    ControlServer,
    SetLaser,
    SetMode,
    SetTarget,
    Status,
    StatusReply,
)
from live_decode.transport.curve import ServerKeys
from live_decode.transport.preview import PreviewPublisher
from live_decode.transport.results import ResultPublisher
from live_decode.viewer.receiver import Receiver

Ctx = zmq.Context[zmq.Socket[bytes]]
LOOPBACK = "tcp://127.0.0.1:*"
CAMERA_PX_NM = 100.0
FOV_PX = (32, 48)  # (height, width): a non-square frame catches x/y swaps
WORKER = WorkerStats(fps=987.0, latency_ms=3.5, queue_depth=2, dropped_upstream=7)


def camera_meta() -> CameraMeta:
    return CameraMeta(
        pixel_size_nm=CAMERA_PX_NM,
        baseline_adu=100.0,
        e_per_adu=1.0,
        em_gain=1.0,
        qe=1.0,
        exposure_ms=1.0,
    )


def make_locs(
    frame: int, xy_nm: list[tuple[float, float]], prob: float = 0.9, sigma_nm: float = 15.0
) -> Localizations:
    """Rows at the given (x, y) nm of one frame."""
    locs = empty_locs(len(xy_nm))
    locs["frame"] = frame
    if xy_nm:
        xy = np.asarray(xy_nm, np.float32)
        locs["x_nm"], locs["y_nm"] = xy[:, 0], xy[:, 1]
    locs["prob"] = prob
    locs["sigma_x_nm"] = locs["sigma_y_nm"] = sigma_nm
    locs["photons"] = 2000.0
    return locs


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.005)


class SyntheticRun:
    """Publishes known localizations and preview frames, as a worker and a source would."""

    def __init__(self, ctx: Ctx, curve: ServerKeys | None = None) -> None:
        self.results = ResultPublisher(ctx, LOOPBACK, curve=curve, sndhwm=100_000)
        self.preview = PreviewPublisher(ctx, LOOPBACK, max_rate_hz=None, curve=curve)
        self.frames_published = 0

    def endpoints(self, control: str | None = None) -> RunEndpoints:
        return RunEndpoints(
            results=self.results.endpoint, preview=self.preview.endpoint, control=control
        )

    def sync(self, receiver: Receiver, timeout_s: float = 5.0) -> None:
        """Publish heartbeats and a frame until both subscriptions are live (slow joiner)."""
        deadline = time.monotonic() + timeout_s
        while receiver.health().messages == 0 or receiver.latest_frame() is None:
            assert time.monotonic() < deadline, "the receiver never got the publications"
            self.results.publish(HeartbeatMsg(time.time_ns()))
            self.publish_preview(np.zeros(FOV_PX, np.uint16), index=0)
            time.sleep(0.01)

    def publish_preview(self, pixels: npt.NDArray[np.uint16], index: int) -> None:
        self.preview.offer(pixels, index=index, timestamp_ns=time.time_ns(), camera=camera_meta())

    def publish(self, locs: Localizations, frames: list[int], densities: list[float]) -> None:
        """One ``locs`` message for ``frames`` (stats: count from ``locs``, given densities)."""
        stats = tuple(
            FrameStats(f, int(np.count_nonzero(locs["frame"] == f)), d, 2000.0, 10.0, 15.0)
            for f, d in zip(frames, densities, strict=True)
        )
        self.results.publish(LocsMsg(locs=locs, frame_stats=stats, worker=WORKER))
        self.frames_published += len(frames)

    def close(self) -> None:
        self.results.close()
        self.preview.close()


@dataclass
class RecordingSource:
    """A control handler that records commands and acts like a source with a laser."""

    commands: list[ControlCommand] = field(default_factory=list)
    laser_mw: float = 3.0
    mode: ControlMode = "off"
    target: float = 1.0

    def __call__(self, command: ControlCommand) -> ControlReply:
        if not isinstance(command, Status):
            self.commands.append(command)
        match command:
            case SetLaser(power_mw=power_mw):
                self.laser_mw = power_mw
            case SetMode(mode=mode):
                self.mode = mode
            case SetTarget(density_per_um2=target):
                self.target = target
        return StatusReply(self.laser_mw, mode=self.mode, target_density_per_um2=self.target)


@dataclass
class ControlFixture:
    source: RecordingSource
    server: ControlServer
    endpoint: str
