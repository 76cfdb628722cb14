"""``ld.attach``: live localization inside a pymmcore-plus acquisition the user runs.

Thin over :class:`live_decode.pipeline.attach.Attachment`, which does the work (the frame pump,
the worker process, the density controller on the user's core, cancelling the MDA when the
worker fails).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from live_decode.api.configs import ConfigLike
from live_decode.api.runs import _config_path

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

    from live_decode.pipeline.attach import Attachment


def attach(
    core: CMMCorePlus,
    config: ConfigLike | None = None,
    *,
    out: str | Path | None = None,
    model: str | Path | None = None,
    camera: str | None = None,
    laser: str | tuple[str, str] | None = None,
    sequences: int | None = None,
    queue_frames: int = 64,
    ignore_model_mismatch: bool = False,
    overwrite: bool = False,
    start: bool = True,
) -> Attachment:
    """Localize, live, every frame the MDA of ``core`` acquires (``core.run_mda(...)``).

    Returns an :class:`~live_decode.pipeline.attach.Attachment`, started by default (the worker
    has loaded and checked its model against the camera): use it as a context manager, or call
    ``close()`` when done; ``close()`` returns the run's result and writes ``summary.json``.

    Parameters
    ----------
    core
        The user's ``CMMCorePlus`` (or ``UniMMCore``), devices loaded; it stays the user's.
    config
        A YAML path, mapping or :class:`Config`: the ``camera`` section fills in what the camera
        does not report (e⁻/ADU, QE, read noise), ``control`` drives the laser, ``inference``
        the worker. An ``mm`` ``source`` section also names the camera and the laser. None:
        the demo config.
    out
        The run directory; None: ``runs/<date-time>``.
    model
        A model file overriding the config's ``inference.model`` (None: the bundled model).
    camera
        The camera device label; None: the config's ``source.camera``, else the core's camera.
    laser
        The activation laser as ``"Device.Property"`` or ``("Device", "Property")``, driven by
        the density controller (``control.mode``); None: the config's ``source.laser_device``,
        else no laser.
    sequences
        End the stream after this many MDA sequences finished; None: at ``close()``.
    queue_frames
        Frames held for the ZeroMQ pump; beyond, frames are dropped and counted as gaps (the
        MDA is never slowed).
    ignore_model_mismatch
        Localize although the model card does not fit the camera.
    overwrite
        Delete an earlier run's results in ``out`` first (else such a directory is refused).
    start
        Start now; else call ``start()``.
    """
    from live_decode.pipeline.attach import Attachment, AttachOptions

    run_dir = (
        Path(out) if out is not None else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    )
    device, prop = _laser(laser)
    opts = AttachOptions(
        config=_config_path(config, run_dir),
        out=run_dir,
        model=Path(model) if model is not None else None,
        camera=camera,
        laser_device=device,
        laser_property=prop,
        sequences=sequences,
        queue_frames=queue_frames,
        ignore_model_mismatch=ignore_model_mismatch,
        overwrite=overwrite,
    )
    attachment = Attachment(core, opts)
    if start:
        attachment.start()
    return attachment


def _laser(laser: str | tuple[str, str] | None) -> tuple[str | None, str | None]:
    if laser is None:
        return None, None
    if isinstance(laser, str):
        device, dot, prop = laser.rpartition(".")
        if not dot or not device or not prop:
            from live_decode.errors import ConfigError

            raise ConfigError(
                f"laser {laser!r}: give it as 'Device.Property', e.g. 'Laser405.Power'"
            )
        return device, prop
    return laser[0], laser[1]
