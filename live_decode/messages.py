"""Shared vocabulary of the data flow: the localization table and the wire protocol.

Localizations travel and are stored as a NumPy structured array with :data:`LOC_DTYPE`:
frame (0-based), x/y/z in nm (x = column, pixel j covers [j, j+1) px), photons, background
(photons/px), detection probability, and the predicted uncertainties.

Wire protocol (DESIGN.md §2, version :data:`PROTOCOL_VERSION`): every message is multipart
``[header, payload...]``; the header is UTF-8 JSON with at least ``{"v", "kind", "seq"}``. Only
``frame`` (raw pixels), ``locs`` (:data:`LOC_DTYPE` rows) and ``image`` (a network's float32
super-resolution image) carry a payload. :func:`encode` hands
the payload buffer to ZeroMQ without copying; :func:`decode` validates everything and views the
received buffer without copying, or raises :class:`~live_decode.errors.ProtocolError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

import numpy as np
import numpy.typing as npt

from live_decode.errors import ProtocolError

if TYPE_CHECKING:
    import zmq

    from live_decode.config import CameraConfig, Config

_Pixels = TypeVar("_Pixels")  # a NumPy array, a torch tensor or a float: arithmetic alike

LOC_DTYPE = np.dtype(
    [
        ("frame", "<i8"),
        ("x_nm", "<f4"),
        ("y_nm", "<f4"),
        ("z_nm", "<f4"),
        ("photons", "<f4"),
        ("bg", "<f4"),
        ("prob", "<f4"),
        ("sigma_x_nm", "<f4"),
        ("sigma_y_nm", "<f4"),
        ("sigma_z_nm", "<f4"),
        ("sigma_photons", "<f4"),
    ]
)

Localizations = npt.NDArray[np.void]

TRUTH_DTYPE = np.dtype(
    [
        ("frame", "<i8"),
        ("id", "<i8"),
        ("x_nm", "<f4"),
        ("y_nm", "<f4"),
        ("z_nm", "<f4"),
        ("photons", "<f4"),
    ]
)
"""The one ground-truth table: frame (0-based), fluorophore id, position in nm (x = column),
photons. The simulator emits it, training validates on it, the ground-truth CSV reads into it."""


def empty_locs(n: int = 0) -> Localizations:
    """A zero-filled localization table of ``n`` rows."""
    return np.zeros(n, dtype=LOC_DTYPE)


# --------------------------------------------------------------------------- protocol constants
PROTOCOL_VERSION: Final = 1
#: Pixel dtypes a ``frame`` may carry; always little-endian on the wire.
FRAME_DTYPES: Final = frozenset({"uint8", "uint16", "int16", "uint32", "float32"})
_WIRE_DTYPES: Final = {name: np.dtype(name).newbyteorder("<") for name in FRAME_DTYPES}

#: A part as handed to ``send_multipart(copy=False)``: payloads are byte views of the arrays.
WirePart = bytes | memoryview


@dataclass(frozen=True)
class Limits:
    """Size limits the receiver enforces, in bytes. Larger messages are rejected, not parsed."""

    max_header_bytes: int = 1 << 20
    max_frame_bytes: int = 64 << 20
    max_locs_bytes: int = 256 << 20
    max_image_bytes: int = 256 << 20


DEFAULT_LIMITS: Final = Limits()


# --------------------------------------------------------------------------- message types
@dataclass(frozen=True)
class CameraMeta:
    """Camera calibration sent with every frame: photons = (ADU − baseline) × e/ADU / gain / QE.

    ``extra`` holds any further JSON keys (camera name, ROI, ...) and round-trips unchanged.
    """

    pixel_size_nm: float
    baseline_adu: float
    e_per_adu: float
    em_gain: float
    qe: float
    exposure_ms: float
    spurious_charge_e: float = 0.0
    read_noise_e: float = 0.0
    extra: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Config) -> CameraMeta:
        """The camera the config's ``camera`` section describes, with ``microscope.exposure_ms``
        (for sources that report no calibration)."""
        return cls.from_camera(cfg.camera, exposure_ms=cfg.microscope.exposure_ms)

    @classmethod
    def from_camera(cls, camera: CameraConfig, exposure_ms: float = 0.0) -> CameraMeta:
        """A :class:`CameraConfig` as camera metadata; an sCMOS has EM gain 1."""
        return cls(
            pixel_size_nm=camera.pixel_size_nm,
            baseline_adu=camera.baseline_adu,
            e_per_adu=camera.e_per_adu,
            em_gain=camera.em_gain if camera.kind == "emccd" else 1.0,
            qe=camera.qe,
            exposure_ms=exposure_ms,
            spurious_charge_e=camera.spurious_charge_e,
            read_noise_e=camera.read_noise_e,
        )

    def adu_to_photons(self, adu: _Pixels) -> _Pixels:
        """Photons detected per pixel from camera ADU: the one conversion of the package.

        photons = ((ADU − baseline) × e⁻/ADU / EM gain − spurious charge e⁻) / QE, for a
        NumPy array, a torch tensor (on any device) or a number; the inverse of what the
        simulated camera does on average (``live_decode.simulation.camera``).
        """
        pixels: Any = adu  # ndarray, Tensor and float share these operators
        photons: _Pixels = (
            (pixels - self.baseline_adu) * (self.e_per_adu / self.em_gain) - self.spurious_charge_e
        ) / self.qe
        return photons


_CAMERA_REQUIRED = ("pixel_size_nm", "baseline_adu", "e_per_adu", "em_gain", "qe", "exposure_ms")
_CAMERA_OPTIONAL = ("spurious_charge_e", "read_noise_e")


@dataclass(frozen=True, eq=False)
class FrameMsg:
    """One camera frame. ``pixels`` is (H, W) in ADU; do not modify it after sending (zero-copy).

    A decoded frame's ``pixels`` views the received ZeroMQ buffer (writeable, no copy).
    """

    kind: ClassVar[str] = "frame"
    index: int
    timestamp_ns: int
    camera: CameraMeta
    pixels: npt.NDArray[Any]
    seq: int = 0


@dataclass(frozen=True)
class GapMsg:
    """``count`` frames the source dropped, the first of them being frame ``first``."""

    kind: ClassVar[str] = "gap"
    first: int
    count: int
    seq: int = 0


@dataclass(frozen=True)
class FrameStats:
    """Per-frame summary. Means are NaN (null on the wire) when ``count`` is 0."""

    frame: int
    count: int
    density_per_um2: float
    mean_photons: float
    mean_bg: float
    mean_sigma_nm: float


@dataclass(frozen=True)
class WorkerStats:
    """Inference worker figures at the time of a batch."""

    fps: float
    latency_ms: float
    queue_depth: int
    dropped_upstream: int


@dataclass(frozen=True, eq=False)
class LocsMsg:
    """A batch of localizations (:data:`LOC_DTYPE`, any number of frames) with their stats."""

    kind: ClassVar[str] = "locs"
    locs: Localizations
    frame_stats: tuple[FrameStats, ...]
    worker: WorkerStats
    seq: int = 0


@dataclass(frozen=True)
class StatsMsg:
    """The stats of a ``locs`` batch without its rows: what the density controller needs."""

    kind: ClassVar[str] = "stats"
    frame_stats: tuple[FrameStats, ...]
    worker: WorkerStats
    seq: int = 0


@dataclass(frozen=True)
class EosMsg:
    """End of stream; ``last_index`` is the last frame produced (None if there was none)."""

    kind: ClassVar[str] = "eos"
    last_index: int | None = None
    seq: int = 0


@dataclass(frozen=True)
class ErrorMsg:
    """A failure a peer must know about; ``code`` is a short machine-readable tag."""

    kind: ClassVar[str] = "error"
    code: str
    message: str
    seq: int = 0


@dataclass(frozen=True)
class EventMsg:
    """Something a peer did or noticed that is not a failure (e.g. the density loop's
    ``mode``/``target``/``saturation``/``watchdog`` events): shown and logged, never acted on as
    an error.

    ``source`` names the sender (``"control"``), ``name`` the event, ``frame`` the camera frame
    it refers to (None if none).
    """

    kind: ClassVar[str] = "event"
    source: str
    name: str
    message: str
    frame: int | None = None
    seq: int = 0


@dataclass(frozen=True)
class HeartbeatMsg:
    """I am alive; ``timestamp_ns`` is the sender's ``time.time_ns()``."""

    kind: ClassVar[str] = "heartbeat"
    timestamp_ns: int
    seq: int = 0


@dataclass(frozen=True)
class HelloMsg:
    """The source's camera, sent on the frame stream before acquisition starts.

    The worker checks its model against it and answers on the results channel with an
    :class:`EventMsg` named :data:`WORKER_READY` (warmed up) or an :class:`ErrorMsg` of code
    :data:`MODEL_REFUSED`.
    ``shape_px`` is (H, W) of the frames to come.
    """

    kind: ClassVar[str] = "hello"
    camera: CameraMeta
    shape_px: tuple[int, int]
    live: bool
    seq: int = 0


@dataclass(frozen=True, eq=False)
class ImageMsg:
    """The super-resolution image a network yields itself (Deep-STORM), summed so far.

    ``pixels`` (H·u, W·u) float32 is the sum of the network's density tiles over the
    ``frames`` frames the worker has processed, the last of them ``last_frame``; a pixel is
    ``pixel_size_nm`` (camera pixel / u). Each message carries the whole sum, not an increment,
    so a subscriber that joins late or misses messages still shows everything: the newest
    message replaces what it had. ``run_id`` identifies the run (its first worker's start
    time, ns; a worker that replaces a dead one keeps it), so a subscriber knows when a new
    run's image starts.
    """

    kind: ClassVar[str] = "image"
    pixels: npt.NDArray[np.float32]
    pixel_size_nm: float
    frames: int
    last_frame: int
    run_id: int = 0
    seq: int = 0


WORKER_EVENTS: Final = "worker"
"""``EventMsg.source`` of the worker's notices (:data:`WORKER_READY`, ``model_mismatch_ignored``,
``model_mismatch_cleared``); its failures go as :class:`ErrorMsg`."""
WORKER_READY: Final = "worker_ready"
"""Name of the worker's event answering a ``hello``: model checked and warmed up."""
MODEL_REFUSED: Final = "model_refused"
"""Code of the worker's answer to a ``hello``: the model does not fit (message says why)."""


Message = (
    FrameMsg
    | GapMsg
    | LocsMsg
    | StatsMsg
    | ImageMsg
    | EosMsg
    | ErrorMsg
    | EventMsg
    | HeartbeatMsg
    | HelloMsg
)


# --------------------------------------------------------------------------- encode
def encode(msg: Message) -> list[WirePart]:
    """Serialize ``msg`` to multipart parts; the payload is a view of the array (zero-copy).

    Send with ``socket.send_multipart(parts, copy=False)``.

    Raises
    ------
    ProtocolError
        If the message cannot be represented (pixel dtype or ndim, locs dtype, NaN/inf metadata).
    """
    header: dict[str, object] = {"v": PROTOCOL_VERSION, "kind": msg.kind, "seq": msg.seq}
    payload: list[WirePart] = []
    if isinstance(msg, FrameMsg):
        pixels = _wire_pixels(msg.pixels)
        header |= {
            "index": msg.index,
            "timestamp_ns": msg.timestamp_ns,
            "shape": list(pixels.shape),
            "dtype": pixels.dtype.name,
            "camera": _camera_to_json(msg.camera),
        }
        payload.append(pixels.data.cast("B"))  # a view: no copy
    elif isinstance(msg, LocsMsg):
        if msg.locs.dtype != LOC_DTYPE or msg.locs.ndim != 1:
            raise ProtocolError(f"locs must be a 1-D LOC_DTYPE array, got {msg.locs.dtype}")
        header |= {"n": len(msg.locs)} | _stats_to_json(msg.frame_stats, msg.worker)
        rows = np.ascontiguousarray(msg.locs)
        payload.append(rows.data.cast("B") if len(rows) else b"")
    elif isinstance(msg, StatsMsg):
        header |= _stats_to_json(msg.frame_stats, msg.worker)
    elif isinstance(msg, ImageMsg):
        image = _wire_image(msg.pixels)
        header |= {
            "shape": list(image.shape),
            "pixel_size_nm": msg.pixel_size_nm,
            "frames": msg.frames,
            "last_frame": msg.last_frame,
            "run_id": msg.run_id,
        }
        payload.append(image.data.cast("B"))
    elif isinstance(msg, GapMsg):
        header |= {"first": msg.first, "count": msg.count}
    elif isinstance(msg, EosMsg):
        header["last_index"] = msg.last_index
    elif isinstance(msg, ErrorMsg):
        header |= {"code": msg.code, "message": msg.message}
    elif isinstance(msg, HelloMsg):
        header |= {
            "camera": _camera_to_json(msg.camera),
            "shape": list(msg.shape_px),
            "live": msg.live,
        }
    elif isinstance(msg, EventMsg):
        header |= {"source": msg.source, "name": msg.name, "message": msg.message}
        header["frame"] = msg.frame
    else:
        header["timestamp_ns"] = msg.timestamp_ns
    try:
        raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"cannot encode a {msg.kind} header as JSON: {exc}") from None
    return [raw, *payload]


def _wire_pixels(pixels: npt.NDArray[Any]) -> npt.NDArray[Any]:
    if pixels.ndim != 2:
        raise ProtocolError(f"a frame must be 2-D (H, W), got shape {pixels.shape}")
    wire = _WIRE_DTYPES.get(pixels.dtype.name)
    if wire is None:
        raise ProtocolError(f"pixel dtype {pixels.dtype} not sendable; use one of {_dtypes()}")
    # Only copies for non-contiguous or big-endian input; a camera buffer goes out as is.
    return np.ascontiguousarray(pixels, dtype=wire)


_IMAGE_DTYPE: Final = np.dtype("<f4")


def _wire_image(pixels: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    if pixels.ndim != 2 or 0 in pixels.shape:
        raise ProtocolError(f"an image must be 2-D (H, W) and not empty, got shape {pixels.shape}")
    if pixels.dtype != _IMAGE_DTYPE:
        raise ProtocolError(f"an image's pixels are float32, got {pixels.dtype}")
    image: npt.NDArray[np.float32] = np.ascontiguousarray(pixels)
    return image


def _camera_to_json(camera: CameraMeta) -> dict[str, object]:
    known = {k: getattr(camera, k) for k in (*_CAMERA_REQUIRED, *_CAMERA_OPTIONAL)}
    clash = known.keys() & camera.extra.keys()
    if clash:
        raise ProtocolError(f"camera.extra repeats named fields {sorted(clash)}")
    return {**known, **camera.extra}


def _nan_to_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _stats_to_json(stats: Sequence[FrameStats], worker: WorkerStats) -> dict[str, object]:
    rows = [
        {
            "frame": s.frame,
            "count": s.count,
            "density_per_um2": s.density_per_um2,
            "mean_photons": _nan_to_none(s.mean_photons),
            "mean_bg": _nan_to_none(s.mean_bg),
            "mean_sigma_nm": _nan_to_none(s.mean_sigma_nm),
        }
        for s in stats
    ]
    figures = {
        "fps": worker.fps,
        "latency_ms": worker.latency_ms,
        "queue_depth": worker.queue_depth,
        "dropped_upstream": worker.dropped_upstream,
    }
    return {"frame_stats": rows, "worker": figures}


# --------------------------------------------------------------------------- decode
def decode(
    parts: Sequence[zmq.Frame | bytes | memoryview], limits: Limits = DEFAULT_LIMITS
) -> Message:
    """Validate and parse a received multipart message; payloads are viewed, not copied.

    Parameters
    ----------
    parts
        As returned by ``socket.recv_multipart(copy=False)`` (or plain bytes).
    limits
        Size limits in bytes.

    Raises
    ------
    ProtocolError
        On anything unexpected: header not a UTF-8 JSON object, wrong version, unknown kind,
        missing or mistyped keys, wrong number of parts, payload size ≠ shape × itemsize,
        disallowed dtype, or a part over its size limit. The message says which.
    """
    if not parts:
        raise ProtocolError("empty message (no header part)")
    raw = _view(parts[0])
    if raw.nbytes > limits.max_header_bytes:
        raise ProtocolError(f"header of {raw.nbytes} B exceeds {limits.max_header_bytes} B")
    try:
        header = json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, got {type(header).__name__}")
    version = header.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ProtocolError(
            f"protocol version {version!r} not supported (this side speaks v{PROTOCOL_VERSION}): "
            "run the same live_decode version on both ends"
        )
    kind = header.get("kind")
    if not isinstance(kind, str) or kind not in _PAYLOAD_PARTS:
        raise ProtocolError(f"unknown message kind {kind!r}; expected one of {sorted(_KINDS)}")
    expected = 1 + _PAYLOAD_PARTS[kind]
    if len(parts) != expected:
        raise ProtocolError(f"a {kind} message has {expected} part(s), got {len(parts)}")
    h = _Header(header, kind)
    seq = h.integer("seq")
    if kind == "frame":
        return _decode_frame(h, _view(parts[1]), seq, limits)
    if kind == "locs":
        return _decode_locs(h, _view(parts[1]), seq, limits)
    if kind == "image":
        return _decode_image(h, _view(parts[1]), seq, limits)
    if kind == "stats":
        stats, worker = _decode_stats(h)
        return StatsMsg(frame_stats=stats, worker=worker, seq=seq)
    if kind == "gap":
        return GapMsg(first=h.integer("first"), count=h.integer("count", minimum=1), seq=seq)
    if kind == "eos":
        last = h.get("last_index")
        return EosMsg(last_index=None if last is None else h.integer("last_index"), seq=seq)
    if kind == "error":
        return ErrorMsg(code=h.text("code"), message=h.text("message"), seq=seq)
    if kind == "hello":
        return _decode_hello(h, seq)
    if kind == "event":
        frame = None if h.get("frame") is None else h.integer("frame")
        return EventMsg(
            source=h.text("source"),
            name=h.text("name"),
            message=h.text("message"),
            frame=frame,
            seq=seq,
        )
    return HeartbeatMsg(timestamp_ns=h.integer("timestamp_ns"), seq=seq)


_PAYLOAD_PARTS: Final = {
    "frame": 1,
    "locs": 1,
    "stats": 0,
    "image": 1,
    "gap": 0,
    "eos": 0,
    "error": 0,
    "event": 0,
    "heartbeat": 0,
    "hello": 0,
}
_KINDS: Final = frozenset(_PAYLOAD_PARTS)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def _view(part: zmq.Frame | bytes | memoryview) -> memoryview:
    if isinstance(part, bytes | bytearray):
        return memoryview(part)
    view = part if isinstance(part, memoryview) else part.buffer
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _dtypes() -> str:
    return ", ".join(sorted(FRAME_DTYPES))


class _Header:
    """Typed access to a header's keys; every failure names the kind and the key."""

    def __init__(self, data: dict[str, Any], kind: str, where: str = "") -> None:
        self.data, self.kind, self.where = data, kind, where

    def _fail(self, key: str, problem: str) -> ProtocolError:
        return ProtocolError(f"{self.kind} header: {self.where}{key} {problem}")

    def get(self, key: str) -> Any:
        if key not in self.data:
            raise self._fail(key, "is missing")
        return self.data[key]

    def integer(self, key: str, minimum: int = 0) -> int:
        value = self.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self._fail(key, f"must be >= {minimum}, got {value}")
        return value

    def number(self, key: str, nullable: bool = False) -> float:
        value = self.get(key)
        if value is None and nullable:
            return math.nan
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail(key, f"must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the float range
            number = math.inf
        if not math.isfinite(number):  # JSON has no inf, but 1e400 parses as one
            raise self._fail(key, f"must be a finite number, got {value}")
        return number

    def text(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self._fail(key, f"must be a string, got {value!r}")
        return value

    def mapping(self, key: str) -> _Header:
        value = self.get(key)
        if not isinstance(value, dict):
            raise self._fail(key, f"must be a JSON object, got {type(value).__name__}")
        return _Header(value, self.kind, f"{self.where}{key}.")

    def array(self, key: str) -> list[Any]:
        value = self.get(key)
        if not isinstance(value, list):
            raise self._fail(key, f"must be a JSON array, got {type(value).__name__}")
        return value


def _decode_frame(h: _Header, payload: memoryview, seq: int, limits: Limits) -> FrameMsg:
    if payload.nbytes > limits.max_frame_bytes:
        raise ProtocolError(
            f"frame payload of {payload.nbytes} B exceeds {limits.max_frame_bytes} B"
        )
    dtype_name = h.text("dtype")
    dtype = _WIRE_DTYPES.get(dtype_name)
    if dtype is None:
        raise ProtocolError(
            f"frame header: dtype {dtype_name!r} not allowed; use one of {_dtypes()}"
        )
    shape = h.array("shape")
    if len(shape) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ProtocolError(f"frame header: shape must be [height, width] integers, got {shape}")
    height, width = shape
    if height < 1 or width < 1:
        raise ProtocolError(f"frame header: shape must be positive, got {shape}")
    if height * width * dtype.itemsize != payload.nbytes:
        raise ProtocolError(
            f"frame payload is {payload.nbytes} B but shape {shape} × {dtype_name} needs "
            f"{height * width * dtype.itemsize} B"
        )
    camera = _decode_camera(h)
    pixels = np.frombuffer(payload, dtype=dtype).reshape(height, width)
    return FrameMsg(
        index=h.integer("index"),
        timestamp_ns=h.integer("timestamp_ns"),
        camera=camera,
        pixels=pixels,
        seq=seq,
    )


def _decode_camera(h: _Header) -> CameraMeta:
    cam = h.mapping("camera")
    optional = {k: cam.number(k) for k in _CAMERA_OPTIONAL if k in cam.data}
    extra = {k: v for k, v in cam.data.items() if k not in (*_CAMERA_REQUIRED, *_CAMERA_OPTIONAL)}
    named = {k: cam.number(k) for k in _CAMERA_REQUIRED} | optional
    return CameraMeta(**named, extra=extra)


def _decode_hello(h: _Header, seq: int) -> HelloMsg:
    shape = h.array("shape")
    if len(shape) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ProtocolError(f"hello header: shape must be [height, width] > 0, got {shape}")
    live = h.get("live")
    if not isinstance(live, bool):
        raise ProtocolError(f"hello header: live must be true or false, got {live!r}")
    return HelloMsg(camera=_decode_camera(h), shape_px=(shape[0], shape[1]), live=live, seq=seq)


def _decode_image(h: _Header, payload: memoryview, seq: int, limits: Limits) -> ImageMsg:
    if payload.nbytes > limits.max_image_bytes:
        raise ProtocolError(
            f"image payload of {payload.nbytes} B exceeds {limits.max_image_bytes} B"
        )
    shape = h.array("shape")
    if len(shape) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ProtocolError(f"image header: shape must be [height, width] > 0, got {shape}")
    height, width = shape
    if height * width * _IMAGE_DTYPE.itemsize != payload.nbytes:
        raise ProtocolError(
            f"image payload is {payload.nbytes} B but shape {shape} × float32 needs "
            f"{height * width * _IMAGE_DTYPE.itemsize} B"
        )
    pixel_nm = h.number("pixel_size_nm")
    if pixel_nm <= 0:
        raise ProtocolError(f"image header: pixel_size_nm must be > 0, got {pixel_nm}")
    pixels = np.frombuffer(payload, dtype=_IMAGE_DTYPE).reshape(height, width)
    if not np.isfinite(pixels).all():
        raise ProtocolError("image payload has NaN or infinite pixels")
    return ImageMsg(
        pixels=pixels,
        pixel_size_nm=pixel_nm,
        frames=h.integer("frames"),
        last_frame=h.integer("last_frame"),
        run_id=h.integer("run_id"),
        seq=seq,
    )


def _decode_locs(h: _Header, payload: memoryview, seq: int, limits: Limits) -> LocsMsg:
    if payload.nbytes > limits.max_locs_bytes:
        raise ProtocolError(f"locs payload of {payload.nbytes} B exceeds {limits.max_locs_bytes} B")
    n = h.integer("n")
    if n * LOC_DTYPE.itemsize != payload.nbytes:
        raise ProtocolError(
            f"locs payload is {payload.nbytes} B but n={n} rows need {n * LOC_DTYPE.itemsize} B"
        )
    stats, worker = _decode_stats(h)
    locs = np.frombuffer(payload, dtype=LOC_DTYPE) if n else empty_locs()
    return LocsMsg(locs=locs, frame_stats=stats, worker=worker, seq=seq)


def _decode_stats(h: _Header) -> tuple[tuple[FrameStats, ...], WorkerStats]:
    rows = []
    for i, item in enumerate(h.array("frame_stats")):
        if not isinstance(item, dict):
            raise ProtocolError(f"{h.kind} header: frame_stats[{i}] must be a JSON object")
        r = _Header(item, h.kind, f"frame_stats[{i}].")
        rows.append(
            FrameStats(
                frame=r.integer("frame"),
                count=r.integer("count"),
                density_per_um2=r.number("density_per_um2"),
                mean_photons=r.number("mean_photons", nullable=True),
                mean_bg=r.number("mean_bg", nullable=True),
                mean_sigma_nm=r.number("mean_sigma_nm", nullable=True),
            )
        )
    w = h.mapping("worker")
    worker = WorkerStats(
        fps=w.number("fps"),
        latency_ms=w.number("latency_ms"),
        queue_depth=w.integer("queue_depth"),
        dropped_upstream=w.integer("dropped_upstream"),
    )
    return tuple(rows), worker
