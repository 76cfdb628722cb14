"""What the dock widget watches: a live run's sockets, or a finished run's files (no Qt).

A :class:`Session` owns live_decode's Qt-free :class:`~live_decode.viewer.Receiver` (its thread
receives localizations, stats and preview frames and grows the super-resolution image) and, for a
live run with a control socket, a :class:`~live_decode.viewer.ControlLink` (its thread sends the
target, feedback and laser commands and polls the source's status). The widget only reads their
snapshots on a timer, so a slow or absent run never blocks napari.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import live_decode as ld
    from live_decode.transport.control import StatusReply
    from live_decode.viewer import ControlLink, Receiver, RenderSettings, RunEndpoints

SessionKind = Literal["live", "finished"]


@dataclass
class Session:
    """A receiver (and maybe a control link) on one run; :meth:`close` stops both.

    ``run_dir`` is None for a run joined by its endpoints alone; ``handle`` is set when the run
    was started from napari (``ld.run``); ``target_per_um2`` is a finished run's last target.
    """

    kind: SessionKind
    receiver: Receiver
    control: ControlLink | None = None
    run_dir: Path | None = None
    handle: ld.RunHandle | None = None
    target_per_um2: float | None = None
    label: str = ""

    def close(self) -> None:
        """Stop the control link and the receiver (idempotent; the run itself goes on)."""
        if self.control is not None:
            self.control.stop()
        self.receiver.stop()


def join(
    endpoints: RunEndpoints,
    *,
    settings: RenderSettings | None = None,
    run_dir: Path | None = None,
    handle: ld.RunHandle | None = None,
) -> Session:
    """Subscribe to a live run (results, preview) and connect to its control socket.

    Raises
    ------
    LiveDecodeError
        If a socket cannot be opened; the message says which.
    """
    from live_decode.viewer import ControlLink, Receiver

    receiver = Receiver(endpoints, settings=settings)
    receiver.start()
    control: ControlLink | None = None
    try:
        if endpoints.control is not None:
            control = ControlLink(endpoints.control, on_status=_laser_recorder(receiver))
            control.start()
    except BaseException:
        receiver.stop()
        raise
    label = str(run_dir) if run_dir is not None else endpoints.results
    return Session("live", receiver, control, run_dir, handle, label=f"live: {label}")


def open_finished(run_dir: Path, *, settings: RenderSettings | None = None) -> Session:
    """A finished run read from its files: image, density and laser traces, last raw frame.

    Raises
    ------
    LiveDecodeError
        If ``run_dir`` holds no localizations.
    """
    from live_decode.viewer import Receiver, load_run

    run = load_run(run_dir)
    receiver = Receiver(None, settings=settings)
    receiver.start()
    try:
        receiver.load_recorded(run)
    except BaseException:
        receiver.stop()
        raise
    return Session(
        "finished",
        receiver,
        run_dir=run_dir,
        target_per_um2=run.target_per_um2,
        label=f"finished: {run_dir}",
    )


def open_run_dir(run_dir: Path, *, settings: RenderSettings | None = None) -> Session:
    """Join the run in ``run_dir`` while it runs (its ``endpoints.json``), else read its files.

    Raises
    ------
    LiveDecodeError
        If the directory is neither a live run nor holds localizations; the message says why.
    """
    from live_decode.errors import LiveDecodeError
    from live_decode.io.run_dir import read_endpoints, run_status

    if not run_dir.is_dir():
        raise LiveDecodeError(f"{run_dir} is not a directory: choose a run directory")
    if run_status(run_dir) == "live":
        record = read_endpoints(run_dir)
        if record.curve:
            raise LiveDecodeError(
                f"the run in {run_dir} needs CURVE keys; join it with `live-decode view "
                f"{run_dir} --keys DIR` instead"
            )
        return join(record.endpoints, settings=settings, run_dir=run_dir)
    return open_finished(run_dir, settings=settings)


def _laser_recorder(receiver: Receiver) -> Callable[[StatusReply], None]:
    """Put the laser power of each status reply on the receiver's laser trace."""

    def record(status: StatusReply) -> None:
        power = status.laser_mw
        if power is not None and power == power:  # None: no laser; NaN: not known
            receiver.record_laser(power)

    return record
