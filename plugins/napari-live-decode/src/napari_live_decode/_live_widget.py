"""The live dock widget: a run's super-resolution image, latest localizations, traces, controls.

Connect it to a running pipeline (its run directory, or an ``ld.run`` handle) or open a finished
run directory. A timer (:data:`REFRESH_MS`) reads the receiver's snapshots and updates three
layers, all in nm (see :mod:`._layers`):

- ``live-decode SR``: the super-resolution image (histogram or σ-Gaussian), scale = render pixel;
- ``live-decode locs``: the localizations of the newest :attr:`latest_frames` frames (Points);
- ``live-decode raw``: the newest camera frame (hidden at first), scale = camera pixel;
- ``live-decode network image``: the image a network yields itself (Deep-STORM's summed
  density), once the worker publishes one; scale = its pixel (camera pixel / upsampling).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_live_decode import _session
from napari_live_decode._layers import image_placement, point_sizes_nm
from napari_live_decode._panels import ControlPanel, TracePlots, health_text

if TYPE_CHECKING:
    import napari

    import live_decode as ld
    from live_decode.viewer import RenderSettings, RunEndpoints

REFRESH_MS: Final = 200
SR_LAYER: Final = "live-decode SR"
LOCS_LAYER: Final = "live-decode locs"
RAW_LAYER: Final = "live-decode raw"
NET_LAYER: Final = "live-decode network image"
MAX_SIDE_PX: Final = 4096
"""A render larger than this (render pixels) is shown binned (the layer's scale says so)."""


class LiveDecodeWidget(QWidget):
    """Dock widget on one run at a time (see the module docstring)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: _session.Session | None = None
        self._holder: list[_session.Session] = []  # for the destroyed-signal cleanup
        self._shown_version = -1
        self._shown_frame: int | None = None
        self._shown_raw = -1
        self._shown_network = -1
        self._drawn = 0
        self._build()
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self.refresh)
        holder = self._holder
        self.destroyed.connect(lambda *_: _close_all(holder))

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        source = QGroupBox("run")
        form = QFormLayout(source)
        self.run_dir = QLineEdit(placeholderText="run directory (live or finished)")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        self.open_button = QPushButton("open")
        self.open_button.clicked.connect(lambda: self.open_run_dir(self.run_dir.text()))
        self.close_button = QPushButton("disconnect")
        self.close_button.clicked.connect(self.close_session)
        form.addRow(_hbox(self.run_dir, browse))
        form.addRow(_hbox(self.open_button, self.close_button))
        self.status = QLabel("not connected")
        self.status.setWordWrap(True)
        form.addRow(self.status)
        layout.addWidget(source)

        render = QGroupBox("super-resolution image")
        rform = QFormLayout(render)
        self.pixel_size = QDoubleSpinBox(decimals=1, minimum=1.0, maximum=1000.0, value=10.0)
        self.pixel_size.setSuffix(" nm")
        self.gaussian = QCheckBox("σ-Gaussian (else histogram)")
        self.min_prob = QDoubleSpinBox(decimals=2, minimum=0.0, maximum=1.0, singleStep=0.05)
        self.auto_contrast = QCheckBox("auto contrast")
        self.auto_contrast.setChecked(True)
        self.latest = QSpinBox(minimum=1, maximum=64, value=10)
        self.latest.setSuffix(" frames")
        rform.addRow("render pixel", self.pixel_size)
        rform.addRow(self.gaussian)
        rform.addRow("min prob", self.min_prob)
        rform.addRow(self.auto_contrast)
        rform.addRow("points: newest", self.latest)
        for signal in (self.pixel_size.valueChanged, self.min_prob.valueChanged):
            signal.connect(self._settings_changed)
        self.gaussian.toggled.connect(self._settings_changed)
        layout.addWidget(render)

        self.traces = TracePlots()
        layout.addWidget(self.traces)
        self.controls = ControlPanel()
        layout.addWidget(self.controls)
        self.health = QLabel("")
        self.health.setWordWrap(True)
        layout.addWidget(self.health)
        layout.addStretch(1)

    # ------------------------------------------------------------------ connecting
    def render_settings(self) -> RenderSettings:
        from live_decode.viewer import RenderSettings

        return RenderSettings(
            pixel_size_nm=self.pixel_size.value(),
            gaussian=self.gaussian.isChecked(),
            min_prob=self.min_prob.value(),
        )

    def open_run_dir(self, run_dir: str | Path) -> _session.Session:
        """Join the run in ``run_dir`` while it runs, else show its files."""
        path = Path(run_dir).expanduser()
        self.run_dir.setText(str(path))
        return self._use(_session.open_run_dir(path, settings=self.render_settings()))

    def join(self, endpoints: RunEndpoints, *, run_dir: Path | None = None) -> _session.Session:
        """Subscribe to a live run by its endpoints (``handle.endpoints``)."""
        return self._use(_session.join(endpoints, settings=self.render_settings(), run_dir=run_dir))

    def watch(self, handle: ld.RunHandle) -> _session.Session:
        """Show a run started with ``ld.run`` (from the start widget or the console)."""
        self.run_dir.setText(str(handle.out))
        session = _session.join(
            handle.endpoints, settings=self.render_settings(), run_dir=handle.out, handle=handle
        )
        return self._use(session)

    def close_session(self) -> None:
        """Stop receiving (the run goes on; its layers stay)."""
        self._timer.stop()
        if self.session is not None:
            self.refresh()  # the last data received
            self.session.close()
            self.status.setText(f"disconnected from {self.session.label}")
        self.session = None
        self._holder.clear()
        self.controls.attach(None)

    def _use(self, session: _session.Session) -> _session.Session:
        if self.session is not None:
            self.close_session()
        self.session = session
        self._holder.append(session)
        self._shown_version, self._shown_frame, self._shown_raw, self._drawn = -1, None, -1, 0
        note = "" if session.kind == "live" else "finished run: no source to control"
        self.controls.attach(session.control, note=note)
        self.status.setText(session.label)
        self.refresh()
        self._timer.start()
        return session

    def _browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(self, "run directory", self.run_dir.text())
        if chosen:
            self.open_run_dir(chosen)

    def _settings_changed(self, *_: object) -> None:
        if self.session is not None:
            self.session.receiver.update_settings(self.render_settings())

    # ------------------------------------------------------------------ the timer
    def refresh(self) -> None:
        """Update the layers, traces, controls and health from the receiver's snapshots."""
        session = self.session
        if session is None:
            return
        receiver = session.receiver
        self._refresh_raw(receiver)
        self._refresh_image(receiver)
        self._refresh_network(receiver)
        self._refresh_points(receiver)
        target = self.controls.target_per_um2 or session.target_per_um2
        self.traces.show_traces(receiver.traces(), target)
        self.controls.refresh()
        self.health.setText(
            health_text(receiver.health(), kept=self._drawn, mismatch=receiver.mismatch_alarm())
        )
        if session.handle is not None and not session.handle.running:
            self.status.setText(f"{session.label} — run ended")

    def _refresh_image(self, receiver: Any) -> None:
        if receiver.render_version() == self._shown_version:
            return
        snap = receiver.render(max_side=MAX_SIDE_PX, wait=False)
        if snap is None or snap.view.image.size == 0:
            return
        self._shown_version, self._drawn = snap.version, snap.drawn
        view = snap.view
        image = np.asarray(view.image, np.float32)
        placement = image_placement(
            snap.settings.pixel_size_nm,
            bin_factor=view.bin_factor,
            y0_px=view.y0_px,
            x0_px=view.x0_px,
        )
        metadata = {"units": "nm", "rendering": _rendering(snap.settings)}
        self._show_image(SR_LAYER, image, placement, metadata, colormap="inferno")

    def _refresh_network(self, receiver: Any) -> None:
        image = receiver.network_image()
        if image is None or image.version == self._shown_network:
            return
        self._shown_network = image.version
        placement = image_placement(image.pixel_size_nm)
        metadata = {"units": "nm", "frames": image.frames, "what": "network's summed density"}
        self._show_image(NET_LAYER, image.pixels, placement, metadata, colormap="inferno")

    def _refresh_points(self, receiver: Any) -> None:
        newest = receiver.latest_result_frame()
        if newest is None or newest == self._shown_frame:
            return
        self._shown_frame = newest
        rows = [
            d
            for f in range(newest - self.latest.value() + 1, newest + 1)
            if (d := receiver.detections(f)) is not None
        ]
        x = np.concatenate([d.x_nm for d in rows]) if rows else np.empty(0, np.float32)
        y = np.concatenate([d.y_nm for d in rows]) if rows else np.empty(0, np.float32)
        sigma = np.concatenate([d.sigma_nm for d in rows]) if rows else np.empty(0, np.float32)
        features = {
            "frame": np.concatenate([np.full(len(d.x_nm), d.frame) for d in rows])
            if rows
            else np.empty(0, np.int64),
            "prob": np.concatenate([d.prob for d in rows]) if rows else np.empty(0, np.float32),
            "sigma_nm": sigma,
        }
        coords = np.column_stack([y, x]).astype(np.float64).reshape(-1, 2)
        sizes = point_sizes_nm(sigma, sigma)
        layer = self._layer(LOCS_LAYER)
        if layer is None:
            self.viewer.add_points(
                coords,
                name=LOCS_LAYER,
                features=features,
                size=sizes,
                face_color="transparent",
                border_color="#40ff80",
                border_width=0.15,
                units=("nm", "nm"),
                axis_labels=("y", "x"),
                metadata={"units": "nm", "frames": (newest - self.latest.value() + 1, newest)},
            )
            self._stack()
            return
        layer.data = coords
        layer.features = features
        layer.size = sizes
        layer.metadata["frames"] = (newest - self.latest.value() + 1, newest)

    def _refresh_raw(self, receiver: Any) -> None:
        frame = receiver.latest_frame()
        if frame is None or frame.received == self._shown_raw:
            return
        self._shown_raw = frame.received
        placement = image_placement(frame.pixel_size_nm)
        metadata = {"units": "nm", "frame": frame.index}
        self._show_image(RAW_LAYER, frame.pixels, placement, metadata, colormap="gray")

    def _show_image(
        self,
        name: str,
        data: np.ndarray,
        placement: dict[str, Any],
        metadata: dict[str, Any],
        *,
        colormap: str,
    ) -> None:
        """Make or update the image layer ``name``; a density layer (not the raw frame) gets
        percentile contrast at first and, with auto-contrast on, at every update."""
        from live_decode.viewer import percentile_levels

        density = name != RAW_LAYER
        layer = self._layer(name)
        if layer is None:
            extra = {"contrast_limits": percentile_levels(data)} if density else {"visible": False}
            self.viewer.add_image(
                data, name=name, colormap=colormap, metadata=metadata, **extra, **placement
            )
            self._stack()
            return
        layer.data = data
        layer.scale, layer.translate = placement["scale"], placement["translate"]
        layer.metadata.update(metadata)
        if density and self.auto_contrast.isChecked():
            layer.contrast_limits = percentile_levels(data)

    def _layer(self, name: str) -> Any:
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401

    def _stack(self) -> None:
        """Keep raw below SR below the network image below locs, whatever order they came in."""
        layers = self.viewer.layers
        # Each moved to the bottom in turn.
        for name in (LOCS_LAYER, NET_LAYER, SR_LAYER, RAW_LAYER):
            if name in layers:
                layers.move(layers.index(name), 0)


def _close_all(sessions: list[_session.Session]) -> None:
    for session in sessions:
        session.close()


def _rendering(settings: RenderSettings) -> str:
    kind = "σ-Gaussian" if settings.gaussian else "histogram"
    return f"{kind}, {settings.pixel_size_nm:g} nm pixels, prob ≥ {settings.min_prob:g}"


def _hbox(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box
