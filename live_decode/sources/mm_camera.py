"""A Micro-Manager camera described for the worker: its calibration as :class:`CameraMeta`.

:class:`MMCamera` reads the camera's frame size, exposure, binning, pixel size and the standard
calibration properties (``Offset``, ``EMGain``) from a core, fills in what the camera does not
report from the config (``defaults``) and applies the config's ``overrides``. It listens to the
core's signals and re-reads the camera whenever a property, the exposure or the pixel size
changes. It never starts or stops an acquisition: the continuous source
(:mod:`live_decode.sources.mm`) and the MDA tap (:mod:`live_decode.sources.mda`) both use it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from live_decode.config import Config, MMSourceConfig
from live_decode.errors import error_if_none
from live_decode.messages import CameraMeta
from live_decode.sources.mm_core import MMDeviceError, require_device

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

log = logging.getLogger("live_decode.sources.mm")

CALIBRATION_FIELDS: Final = (
    "pixel_size_nm",
    "baseline_adu",
    "e_per_adu",
    "em_gain",
    "qe",
    "read_noise_e",
    "spurious_charge_e",
)
"""The :class:`CameraMeta` fields a config may supply (``defaults``) or force (``overrides``)."""

NEUTRAL: Final[Mapping[str, float]] = {
    "baseline_adu": 0.0,
    "e_per_adu": 1.0,
    "em_gain": 1.0,
    "qe": 1.0,
    "read_noise_e": 0.0,
    "spurious_charge_e": 0.0,
}
"""What a value nobody supplies falls back to (photons = ADU)."""

REPORTED_PROPERTIES: Final[Mapping[str, str]] = {"Offset": "baseline_adu", "EMGain": "em_gain"}
"""Standard Micro-Manager camera properties taken as calibration (property → CameraMeta field).

``Gain`` is not among them: on most cameras it is a setting (a register, a mode index), not
electrons per ADU; its raw value travels in ``CameraMeta.extra["mm_gain"]``.
"""


class MMCamera:
    """One monochrome camera of a core, described as :class:`CameraMeta` (kept up to date).

    Parameters
    ----------
    core
        A core with its devices loaded and initialized.
    camera
        Camera device label; None = the core's current camera. It becomes the current camera.
    defaults, overrides
        :data:`CALIBRATION_FIELDS` values for what the camera does not report / that replace
        what it reports.

    Raises
    ------
    MMDeviceError
        No camera, an unknown label, a device that is not a camera, or a colour camera.
    ValueError
        An unknown field in ``defaults`` or ``overrides``.
    """

    def __init__(
        self,
        core: CMMCorePlus,
        camera: str | None = None,
        *,
        defaults: Mapping[str, float] | None = None,
        overrides: Mapping[str, float] | None = None,
    ) -> None:
        self._defaults = calibration_values(defaults or {}, "defaults")
        self._overrides = calibration_values(overrides or {}, "overrides")
        label = camera if camera is not None else str(core.getCameraDevice())
        if not label:
            raise MMDeviceError(
                "Micro-Manager has no camera: name it in source.camera or add "
                "'Property,Core,Camera,<label>' to the .cfg file"
            )
        require_device(core, label, "camera")
        if str(core.getDeviceType(label)) != "Camera":
            raise MMDeviceError(
                f"camera: device {label!r} is a {core.getDeviceType(label)} device, not a camera"
            )
        if core.getCameraDevice() != label:
            core.setCameraDevice(label)
        if core.getNumberOfComponents() != 1:
            raise MMDeviceError(
                f"camera {label!r} delivers colour images; SMLM needs a "
                "monochrome camera (check its PixelType)"
            )
        self._core: CMMCorePlus | None = core
        self.label = label
        self.dirty = True
        self._warned_pixel_size = False
        self._camera: CameraMeta | None = None
        self.shape_px = (0, 0)
        """(height, width) of the frames, px (as of the last read)."""
        self.exposure_ms = 0.0
        self.binning = ""
        self.calibration_sources: dict[str, str] = {}
        """Where each value came from (config, camera property, pixel-size preset ...)."""
        self.refresh()
        events = core.events
        events.propertyChanged.connect(self._on_property_changed)
        events.exposureChanged.connect(self._on_exposure_changed)
        events.pixelSizeChanged.connect(self.mark_dirty)

    @property
    def camera(self) -> CameraMeta:
        """Calibration and settings of the camera now (re-read when they changed)."""
        if self.dirty and self._core is not None:
            self.refresh()
        return error_if_none(self._camera, "the camera metadata was never read")

    def note_binning(self, binning: object) -> None:
        """A frame reported ``binning``: re-read the camera if it differs from what we know."""
        if binning is not None and str(binning) != self.binning:
            self.dirty = True

    def close(self) -> None:
        """Stop listening to the core's signals (the core itself is left alone). Idempotent."""
        core, self._core = self._core, None
        if core is None:
            return
        events = core.events
        for signal, slot in (
            (events.propertyChanged, self._on_property_changed),
            (events.exposureChanged, self._on_exposure_changed),
            (events.pixelSizeChanged, self.mark_dirty),
        ):
            signal.disconnect(slot)

    def refresh(self) -> None:
        """Read the camera from the core now."""
        core = self._core
        if core is None:
            raise MMDeviceError(f"camera {self.label!r}: its description was closed")
        cam = self.label
        self.dirty = False  # first: a change during the reads below marks it again
        self.exposure_ms = float(core.getExposure())
        self.binning = (
            str(core.getProperty(cam, "Binning")) if core.hasProperty(cam, "Binning") else "1"
        )
        self.shape_px = (int(core.getImageHeight()), int(core.getImageWidth()))
        reported: dict[str, float] = {}
        for prop, field in REPORTED_PROPERTIES.items():
            if core.hasProperty(cam, prop):
                v = as_float(core.getProperty(cam, prop))
                if v is not None:
                    reported[field] = v
        if "em_gain" in reported:  # 0 = EM gain off on some cameras: a multiplication by 1
            reported["em_gain"] = max(1.0, reported["em_gain"])
        pixel_um = float(core.getPixelSizeUm())
        if pixel_um > 0:
            reported["pixel_size_nm"] = pixel_um * 1000.0
        values = {**NEUTRAL, **self._defaults, **reported, **self._overrides}
        prop_of = {field: prop for prop, field in REPORTED_PROPERTIES.items()}
        self.calibration_sources = {
            k: (
                f"config source.{k} (override)"
                if k in self._overrides
                else f"camera property {prop_of[k]}"
                if k in reported and k in prop_of
                else "Micro-Manager pixel size preset"
                if k in reported
                else f"config camera.{k}"
                if k in self._defaults
                else "neutral default (photons = ADU)"
            )
            for k in values
        }
        self.calibration_sources["exposure_ms"] = "Micro-Manager core exposure"
        if "pixel_size_nm" not in values:
            raise MMDeviceError(
                "the core has no pixel size for the current configuration: add a pixel size "
                "preset (ConfigPixelSize + PixelSize_um) to the .cfg, or set camera.pixel_size_nm"
            )
        if pixel_um <= 0 and "pixel_size_nm" not in self._overrides and not self._warned_pixel_size:
            self._warned_pixel_size = True
            log.warning(
                "the core has no pixel size preset for the current state; using "
                "%g nm from the config",
                values["pixel_size_nm"],
            )
        extra: dict[str, object] = {"camera": cam, "binning": self.binning}
        if core.hasProperty(cam, "Gain"):
            extra["mm_gain"] = str(core.getProperty(cam, "Gain"))
        self._camera = CameraMeta(
            exposure_ms=self.exposure_ms, extra=extra, **{k: values[k] for k in CALIBRATION_FIELDS}
        )

    def _on_property_changed(self, device: str, prop: str, value: object) -> None:
        if device == self.label or device == "Core":
            self.dirty = True

    def _on_exposure_changed(self, device: str, value: float) -> None:
        self.dirty = True

    def mark_dirty(self, *_: object) -> None:
        """Re-read the camera before its next description."""
        self.dirty = True


def calibration_values(values: Mapping[str, float], what: str) -> dict[str, float]:
    """``values`` as floats; a ``ValueError`` names any key not in :data:`CALIBRATION_FIELDS`."""
    unknown = sorted(set(values) - set(CALIBRATION_FIELDS))
    if unknown:
        raise ValueError(f"{what}: unknown camera field(s) {unknown}; use {CALIBRATION_FIELDS}")
    return {k: float(v) for k, v in values.items()}


def as_float(value: object) -> float | None:
    """``value`` as a float, or None (absent or not a number)."""
    try:
        return float(str(value)) if value is not None else None
    except ValueError:
        return None


def calibration_from_config(cfg: Config) -> tuple[dict[str, float], dict[str, float]]:
    """(defaults, overrides) for :class:`MMCamera` from a :class:`~live_decode.config.Config`.

    The ``camera`` section supplies what the camera does not report; values set in an ``mm``
    ``source`` section override what it reports.
    """
    cam = cfg.camera
    defaults = {
        "pixel_size_nm": cam.pixel_size_nm,
        "baseline_adu": cam.baseline_adu,
        "e_per_adu": cam.e_per_adu,
        "em_gain": cam.em_gain if cam.kind == "emccd" else 1.0,
        "qe": cam.qe,
        "read_noise_e": cam.read_noise_e,
        "spurious_charge_e": cam.spurious_charge_e,
    }
    src = cfg.source
    overrides: dict[str, float] = {}
    if isinstance(src, MMSourceConfig):
        overrides = {
            k: float(v)
            for k in ("baseline_adu", "e_per_adu", "em_gain", "qe")
            if (v := getattr(src, k)) is not None
        }
    return defaults, overrides
