"""Start a live run from a config (``ld.run``) and watch it in the live dock widget.

The processes start on a background thread (``ld.run`` waits for them, a few seconds); once they
run, the widget docks a :class:`~._live_widget.LiveDecodeWidget` on the run (or reuses the one it
docked before). Stop asks the run to end as Ctrl-C does; when the run has ended, ``wait`` (which
writes ``summary.json`` and the plots) runs on a thread too, and the status line gives the
result.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_live_decode._live_widget import LiveDecodeWidget

if TYPE_CHECKING:
    import napari

    import live_decode as ld
    from live_decode.pipeline.supervisor import RunResult

POLL_MS: Final = 250


class StartRunWidget(QWidget):
    """Config file (empty: the embedded demo), frames, run directory; start and stop."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.handle: ld.RunHandle | None = None
        self.result: RunResult | None = None
        self.live: LiveDecodeWidget | None = None
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._finishing: threading.Thread | None = None
        form = QFormLayout(self)
        self.config = QLineEdit(placeholderText="config YAML (empty: the embedded demo)")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        form.addRow("config", _hbox(self.config, browse))
        self.frames = QSpinBox(minimum=0, maximum=10_000_000, value=600)
        self.frames.setSpecialValueText("until stopped")
        form.addRow("frames", self.frames)
        self.out = QLineEdit(placeholderText="run directory (empty: runs/<date-time>)")
        form.addRow("run dir", self.out)
        self.overwrite = QCheckBox("replace an earlier run's results there")
        form.addRow(self.overwrite)
        self.start_button = QPushButton("start run")
        self.stop_button = QPushButton("stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        form.addRow(_hbox(self.start_button, self.stop_button))
        self.status = QLabel("idle")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        """Check the config, then start the run's processes on a thread."""
        import live_decode as ld

        if self._busy():
            self.status.setText("a run is going: stop it first")
            return
        config = self.config.text().strip() or None
        try:
            if config is not None:
                ld.load_config(config)  # a bad file is reported here, before any process
        except ld.LiveDecodeError as exc:
            self.status.setText(f"config refused: {exc}")
            return
        out_text = self.out.text().strip()
        out = (
            Path(out_text) if out_text else Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
        )
        frames = self.frames.value() or None
        overwrite = self.overwrite.isChecked()
        self.handle, self.result, self._start_error = None, None, None

        def start_run() -> None:
            try:
                self.handle = ld.run(config, out=out, frames=frames, overwrite=overwrite)
            except BaseException as exc:  # shown on the status line by poll()
                self._start_error = exc

        self._starting = threading.Thread(target=start_run, name="ld-napari-start", daemon=True)
        self._starting.start()
        self.status.setText(f"starting the run in {out} …")
        self.start_button.setEnabled(False)
        self._timer.start()

    def stop(self) -> None:
        """End the run as Ctrl-C does (laser to safe, frames in flight localized)."""
        if self.handle is not None and self.handle.running:
            self.handle.stop()
            self.status.setText(f"stopping the run in {self.handle.out} …")

    # ------------------------------------------------------------------ the timer
    def poll(self) -> None:
        """Follow the run: started → dock the live widget; ended → wait() → the result."""
        if self._starting is not None:
            if self._starting.is_alive():
                return
            self._starting = None
            if self._start_error is not None or self.handle is None:
                self.status.setText(f"the run did not start: {self._start_error}")
                self._idle()
                return
            self._show_live(self.handle)
            self.stop_button.setEnabled(True)
            self.status.setText(f"running: {self.handle.out}")
        handle = self.handle
        if handle is None:
            return
        if handle.running:
            state = handle.state
            self.status.setText(
                f"running: {handle.out} — {state.frames_localized} frames, "
                f"{state.localizations:,} localizations"
            )
            return
        if self._finishing is None:
            self._finishing = threading.Thread(target=self._finish, name="ld-napari-wait")
            self._finishing.daemon = True
            self._finishing.start()
            self.status.setText(f"run ended; writing the summary in {handle.out} …")
            return
        if not self._finishing.is_alive():
            self._finishing = None
            r = self.result
            self.status.setText(
                f"run ended ({r.status}, exit {r.exit_code}): {handle.out}"
                if r is not None
                else f"run ended: {handle.out} (no result; see its logs)"
            )
            self._idle()

    def wait(self, timeout_s: float | None = None) -> RunResult | None:
        """Wait for the run to end and return its result (for scripts and tests)."""
        if self._starting is not None:
            self._starting.join(timeout_s)
        self.poll()
        return self.handle.wait(timeout_s) if self.handle is not None else None

    def _finish(self) -> None:
        if self.handle is not None:
            self.result = self.handle.wait()

    def _busy(self) -> bool:
        return self._starting is not None or (self.handle is not None and self.handle.running)

    def _idle(self) -> None:
        self._timer.stop()
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _show_live(self, handle: ld.RunHandle) -> None:
        if self.live is None:
            self.live = LiveDecodeWidget(self.viewer)
            self.viewer.window.add_dock_widget(self.live, name="live-decode: live run")
        self.live.watch(handle)

    def _browse(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(self, "config", "", "YAML (*.yaml *.yml)")
        if chosen:
            self.config.setText(chosen)


def _hbox(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box
