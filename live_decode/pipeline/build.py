"""Builders of one run: the frame source, the localizer and the socket endpoints, from a config."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import torch

from live_decode.config import (
    DEMO_CONFIG,
    Config,
    MMSourceConfig,
    ReplaySourceConfig,
    SimulatedSourceConfig,
    load_config,
)
from live_decode.endpoints import RunEndpoints
from live_decode.errors import ConfigError, ModelCardError
from live_decode.inference.engine import SpeedOptions
from live_decode.model.checkpoint import bundled_model_path
from live_decode.model.device import resolve_device
from live_decode.model.seam import NetworkLocalizer
from live_decode.pipeline.kinds import LocalizerOptions, load_localizer
from live_decode.sources.base import FrameSource, camera_from_config
from live_decode.transport.curve import ClientKeys, ServerKeys, client_keys, server_keys

__all__ = [
    "DEMO_CONFIG",
    "RunEndpoints",
    "build_localizer",
    "build_source",
    "endpoints_for",
    "load_config_or_demo",
    "model_path",
    "speed_options",
]


def load_config_or_demo(path: Path | None) -> Config:
    """The config at ``path``, or the embedded demo config."""
    return load_config(path if path is not None else DEMO_CONFIG)


def build_source(
    cfg: Config, replay: list[Path] | None = None, config_label: str | None = None
) -> FrameSource:
    """The frame source the config (or an explicit list of movies) asks for.

    ``config_label`` names the user's config file; None means ``cfg`` is the demo default, so a
    replayed file's calibration is never contradicted by it (values it lacks are the demo's).
    """
    src = cfg.source
    if replay:
        src = ReplaySourceConfig(paths=replay)
    if isinstance(src, SimulatedSourceConfig):
        from live_decode.sources.simulated import SimulatedSource

        return SimulatedSource(cfg)
    if isinstance(src, ReplaySourceConfig):
        from live_decode.sources.replay import ReplaySource, explicit_camera_keys

        return ReplaySource(
            src.paths,
            camera_from_config(cfg),
            start=src.start_frame,
            stop=src.stop_frame,
            loop=src.loop,
            fps=src.fps,
            config_keys=None if config_label is None else explicit_camera_keys(cfg, config_label),
            default_label=f"config default ({config_label})",
        )
    if isinstance(src, MMSourceConfig):
        import importlib

        name = "live_decode.sources.mda" if src.mda is not None else "live_decode.sources.mm"
        try:
            mm = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"the Micro-Manager source is not available: {exc}") from None
        kind = mm.MDASource if src.mda is not None else mm.MMSource
        source: FrameSource = kind.from_config(cfg)
        return source
    raise ConfigError(f"unknown source kind {src!r}")


def model_path(cfg: Config, override: Path | None = None) -> Path:
    """The model file a run uses: ``override``, else the config's, else the bundled one."""
    path = override or cfg.inference.model or bundled_model_path()
    if not path.is_file():
        raise ModelCardError(
            f"{path}: model file not found; train one with `live-decode train CONFIG` "
            "or pass --model"
        )
    return path


def build_localizer(
    cfg: Config,
    override: Path | None = None,
    device: str | None = None,
    threshold: float | None = None,
) -> NetworkLocalizer:
    """Load the model (config, override, or bundled) of any kind onto the configured device.

    DECODE's detection thresholds: the config's ``postprocess`` section where it has one, else
    the ones in the model card (what the model was evaluated with). ``threshold`` overrides the
    detection threshold of any kind.
    """
    dev = resolve_device(device or cfg.inference.device)
    post = cfg.postprocess if "postprocess" in cfg.model_fields_set else None
    opts = LocalizerOptions(
        dev, post, amp=cfg.inference.amp, speed=speed_options(cfg, dev), threshold=threshold
    )
    return load_localizer(model_path(cfg, override), opts)


def speed_options(cfg: Config, device: torch.device) -> SpeedOptions:
    """The engine options the config asks for, limited to what this device does well."""
    if cfg.inference.speed == "reference":
        return SpeedOptions()
    opts = SpeedOptions.fast(device)
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        opts = replace(opts, autocast_cpu=False)  # emulated bf16 is slower than fp32
    return replace(opts, pinned_copy=opts.pinned_copy and cfg.inference.pinned_copy)


def _free_ports(host: str, n: int, taken: set[int]) -> list[int]:
    """``n`` distinct free ports on ``host``, none of them in ``taken``.

    All probe sockets stay bound until every port is chosen: a port released after one probe
    can come straight back from the next (seen: preview and control given the same port).
    """
    probes: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probes.append(s)
            s.bind((host, 0))
            port = int(s.getsockname()[1])
            if port not in taken and port not in ports:
                ports.append(port)
    finally:
        for s in probes:
            s.close()
    return ports


def endpoints_for(cfg: Config) -> RunEndpoints:
    """Endpoints from the transport config; port 0 picks a free port now (all distinct)."""
    t = cfg.transport
    wanted = [t.frames_port, t.results_port, t.preview_port, t.control_port]
    free = iter(_free_ports(t.host, wanted.count(0), {p for p in wanted if p}))
    frames, results, preview, control = (f"tcp://{t.host}:{p or next(free)}" for p in wanted)
    return RunEndpoints(frames=frames, results=results, preview=preview, control=control)


def server_curve(cfg: Config) -> ServerKeys | None:
    """CURVE keys for the sockets this process binds (``transport.keys_dir``), or None."""
    d = cfg.transport.keys_dir
    return None if d is None else server_keys(d)


def client_curve(cfg: Config) -> ClientKeys | None:
    """CURVE keys for the sockets this process connects (``transport.keys_dir``), or None."""
    d = cfg.transport.keys_dir
    return None if d is None else client_keys(d)
