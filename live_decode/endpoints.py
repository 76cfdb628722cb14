"""Where one run's sockets listen: :class:`RunEndpoints`, the one type for a run's set of endpoints.

The supervisor picks them (``pipeline.build.endpoints_for``), hands them to its children as
command-line options (:meth:`RunEndpoints.as_args`), records them in the run directory
(``io.run_dir``: ``endpoints.json``) and a viewer connects to them. A single endpoint string is
parsed by :func:`~live_decode.transport.sockets.parse_endpoint` (the type
:class:`~live_decode.transport.sockets.Endpoint`);
:func:`~live_decode.transport.sockets.check_endpoints` checks them all. No dependencies: every
room may import this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: The transport's default ports (DESIGN.md §1), where a run started without options listens.
DEFAULT_FRAMES_PORT: Final = 5555
DEFAULT_PREVIEW_PORT: Final = 5556
DEFAULT_RESULTS_PORT: Final = 5557
DEFAULT_CONTROL_PORT: Final = 5558


@dataclass(frozen=True, kw_only=True)
class RunEndpoints:
    """ZeroMQ endpoints (``tcp://host:port``) of one run's sockets; None: that socket is not used.

    ``frames``: source → worker frames (PUSH/PULL); ``results``: the worker's localizations,
    stats and events (PUB); ``preview``: the source's raw-frame preview (PUB); ``control``: the
    source's control commands (REP).
    """

    results: str
    frames: str | None = None
    preview: str | None = None
    control: str | None = None

    @classmethod
    def on_host(
        cls,
        host: str,
        results_port: int = DEFAULT_RESULTS_PORT,
        preview_port: int | None = DEFAULT_PREVIEW_PORT,
        control_port: int | None = DEFAULT_CONTROL_PORT,
    ) -> RunEndpoints:
        """What a viewer joins on ``host`` (a name, IPv4, or ``[IPv6]``); a port of None is not
        used, and the frames socket is none of a viewer's business."""
        host = host.removeprefix("tcp://").rstrip("/")

        def tcp(port: int | None) -> str | None:
            return None if port is None else f"tcp://{host}:{port}"

        return cls(
            results=f"tcp://{host}:{results_port}",
            preview=tcp(preview_port),
            control=tcp(control_port),
        )

    def as_args(self) -> list[str]:
        """``--frames-endpoint X --results-endpoint Y ...`` for the sockets that are used."""
        named = (
            ("frames", self.frames),
            ("results", self.results),
            ("preview", self.preview),
            ("control", self.control),
        )
        return [a for name, ep in named if ep is not None for a in (f"--{name}-endpoint", ep)]

    def all(self) -> list[str]:
        """The endpoints that are used (frames, results, preview, control order)."""
        return [e for e in (self.frames, self.results, self.preview, self.control) if e is not None]
