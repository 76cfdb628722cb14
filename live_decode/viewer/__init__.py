"""The live viewer (issue 6): the only package that imports Qt, and only in its widget modules.

The models (:mod:`.accumulator`, :mod:`.density`), the background threads (:mod:`.receiver`,
:mod:`.control_link`) and a finished run read back (:func:`load_run`) are Qt-free and importable
without a display: the names below are what other front ends (the napari plugin) build on. The
window (:class:`ViewerWindow`, :func:`open_viewer`, :class:`ViewerOptions`) is imported on first
use, so ``import live_decode.viewer`` never loads Qt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from live_decode.endpoints import RunEndpoints
from live_decode.viewer.accumulator import ImageView, RenderSettings, SuperResAccumulator
from live_decode.viewer.control_link import ControlLink, Reply
from live_decode.viewer.density import DensityTrace, Health, LaserTrace, RateMeter
from live_decode.viewer.export import export_png, export_tiff
from live_decode.viewer.receiver import Receiver
from live_decode.viewer.render import percentile_levels
from live_decode.viewer.run_files import RecordedRun, load_run
from live_decode.viewer.snapshots import PreviewFrame, RenderSnapshot, Traces

if TYPE_CHECKING:
    from live_decode.viewer.window import ViewerOptions, ViewerWindow, open_viewer

_QT_NAMES = ("ViewerOptions", "ViewerWindow", "open_viewer")


def __getattr__(name: str) -> Any:
    if name in _QT_NAMES:
        from live_decode.viewer import window

        return getattr(window, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ControlLink",
    "DensityTrace",
    "Health",
    "ImageView",
    "LaserTrace",
    "PreviewFrame",
    "RateMeter",
    "Receiver",
    "RecordedRun",
    "RenderSettings",
    "RenderSnapshot",
    "Reply",
    "RunEndpoints",
    "SuperResAccumulator",
    "Traces",
    "ViewerOptions",
    "ViewerWindow",
    "export_png",
    "export_tiff",
    "load_run",
    "open_viewer",
    "percentile_levels",
]
