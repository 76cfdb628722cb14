"""Running the viewer as an application: QApplication, window, Ctrl-C, timed screenshot."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from live_decode.config import QualityConfig
from live_decode.endpoints import RunEndpoints
from live_decode.transport.curve import ClientKeys
from live_decode.viewer.accumulator import RenderSettings
from live_decode.viewer.run_files import RecordedRun
from live_decode.viewer.window import (
    ViewerOptions,
    ViewerWindow,
    open_recorded_run,
    open_viewer,
)


def run_app(
    endpoints: RunEndpoints | RecordedRun,
    *,
    curve: ClientKeys | None = None,
    settings: RenderSettings | None = None,
    model_line: str = "",
    options: ViewerOptions | None = None,
    seconds: float | None = None,
    screenshot: Path | None = None,
    quality: QualityConfig | None = None,
) -> int:
    """Show the viewer until it is closed (or for ``seconds``, then save ``screenshot``).

    ``endpoints``: a live run's sockets, or a recorded run read from its directory.
    ``quality``: cadence and parameters of the viewer's own NeNA/FRC/drift.

    Returns the exit status (0). Raises LiveDecodeError if the sockets cannot be opened.
    """
    app = QApplication.instance() or QApplication([sys.argv[0]])
    if isinstance(endpoints, RecordedRun):
        window = open_recorded_run(
            endpoints, settings=settings, model_line=model_line, options=options, quality=quality
        )
    else:
        window = open_viewer(
            endpoints,
            curve=curve,
            settings=settings,
            model_line=model_line,
            options=options,
            quality=quality,
        )
    window.show()
    # Qt's event loop keeps Python from running signal handlers; an idle timer lets Ctrl-C in.
    previous = signal.signal(signal.SIGINT, lambda _s, _f: window.close())
    heartbeat = QTimer(window)
    heartbeat.timeout.connect(lambda: None)
    heartbeat.start(200)
    if seconds is not None:
        QTimer.singleShot(round(seconds * 1000), lambda: _finish(window, screenshot))
    try:
        app.exec()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        window.shutdown()
    return 0


def _finish(window: ViewerWindow, screenshot: Path | None) -> None:
    if screenshot is not None:
        window.refresh_render()  # draw the newest data before the picture
        window.refresh_plots()
        window.refresh_frame()
        window.save_screenshot(screenshot)
    window.close()
