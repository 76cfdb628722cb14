"""Camera calibration a movie file carries, with where each value came from.

Read, in this order (the first that has a value wins):

1. this project's own metadata (``live-decode simulate`` / ``run``'s raw recording): the camera
   JSON in the OME ``Description``, else the ``live_decode.camera`` ``MapAnnotation``;
2. OME-XML ``Pixels`` ``PhysicalSizeX`` (with its unit) and ``TimeIncrement``;
3. Micro-Manager metadata (``PixelSizeUm`` / ``PixelSize_um``, ``Exposure-ms``, the camera's
   ``Offset`` and ``EMGain`` properties);
4. ImageJ TIFF: ``XResolution`` in pixels per ImageJ ``unit`` (µm, nm), ``finterval``.

Every value is paired with a source label such as ``"file:OME PhysicalSizeX"``, which the run
directory keeps in ``calibration.json``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tifffile

from live_decode.io.movie import CAMERA_NAMESPACE, camera_from_tiff

CALIBRATION_NAME = "calibration.json"
CAMERA_KEYS = (
    "pixel_size_nm",
    "baseline_adu",
    "e_per_adu",
    "em_gain",
    "qe",
    "exposure_ms",
    "spurious_charge_e",
    "read_noise_e",
)
"""The :class:`~live_decode.messages.CameraMeta` fields a file may calibrate."""

_NM_PER_UNIT = {
    "nm": 1.0,
    "µm": 1000.0,
    "um": 1000.0,
    "micron": 1000.0,
    "microns": 1000.0,
    "\\u00b5m": 1000.0,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
    "å": 0.1,
    "angstrom": 0.1,
}
FRAME_INTERVAL_KEY = "frame_interval_ms"
"""Also read from a file (for camera-paced replay); not a camera calibration value."""
_MS_PER_UNIT = {"s": 1000.0, "ms": 1.0, "µs": 1e-3, "us": 1e-3, "min": 60_000.0}
MM_CAMERA_PROPERTIES = {"Offset": "baseline_adu", "EMGain": "em_gain"}
"""Micro-Manager camera properties that are calibrations (as the live Micro-Manager source)."""
_PLAUSIBLE_PIXEL_NM = (1.0, 100_000.0)  # a back-projected camera pixel, 1 nm .. 100 µm


@dataclass
class Calibration:
    """Camera values (CameraMeta field names, SI-ish units) and the source of each."""

    values: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def set(self, key: str, value: float, source: str) -> None:
        """Keep ``value`` unless a higher-priority source gave ``key`` already."""
        if key not in self.values:
            self.values[key] = float(value)
            self.sources[key] = source

    def to_dict(self) -> dict[str, dict[str, object]]:
        """``{key: {"value": v, "source": s}}`` for ``calibration.json``."""
        return {k: {"value": self.values[k], "source": self.sources[k]} for k in self.values}


def _unit_nm(unit: str | None, default: str = "µm") -> float | None:
    key = (unit or default).strip().lower().replace("\\u00b5", "µ")
    return _NM_PER_UNIT.get(key)


def _plausible_pixel(nm: float) -> bool:
    return _PLAUSIBLE_PIXEL_NM[0] <= nm <= _PLAUSIBLE_PIXEL_NM[1]


def _strip_ns(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _from_ome(ome: str, cal: Calibration) -> None:
    try:
        root = ET.fromstring(ome)
    except ET.ParseError:
        return
    for el in root.iter():
        if _strip_ns(el.tag) == "MapAnnotation" and el.get("Namespace") == CAMERA_NAMESPACE:
            for item in el.iter():
                if _strip_ns(item.tag) == "M" and item.get("K") in CAMERA_KEYS:
                    try:
                        value = float(item.text or "")
                    except ValueError:
                        continue
                    cal.set(str(item.get("K")), value, "file:OME MapAnnotation")
    pixels = next((el for el in root.iter() if _strip_ns(el.tag) == "Pixels"), None)
    if pixels is None:
        return
    increment = pixels.get("TimeIncrement")
    ms_per_unit = _MS_PER_UNIT.get((pixels.get("TimeIncrementUnit") or "s").strip().lower())
    if increment is not None and ms_per_unit is not None:
        try:
            interval_ms = float(increment) * ms_per_unit
        except ValueError:
            interval_ms = 0.0
        if interval_ms > 0:
            cal.set(FRAME_INTERVAL_KEY, interval_ms, "file:OME TimeIncrement")
    size = pixels.get("PhysicalSizeX")
    scale = _unit_nm(pixels.get("PhysicalSizeXUnit"))
    if size is not None and scale is not None:
        try:
            nm = float(size) * scale
        except ValueError:
            nm = float("nan")
        if _plausible_pixel(nm):
            cal.set("pixel_size_nm", nm, "file:OME PhysicalSizeX")


def _from_micromanager(tif: tifffile.TiffFile, cal: Calibration) -> None:
    meta: Mapping[str, Any] = {}
    try:
        mm = tif.micromanager_metadata
        summary = (mm or {}).get("Summary") if isinstance(mm, dict) else None
        if isinstance(summary, dict):
            meta = summary
        first = tif.pages.first
        tag = first.tags.get(51123) if first is not None else None  # MicroManagerMetadata
        if tag is not None:
            value = tag.value
            page_meta = json.loads(value) if isinstance(value, str | bytes) else value
            if isinstance(page_meta, dict):
                meta = {**page_meta, **meta}
    except (ValueError, TypeError, AttributeError):
        return
    for key in ("PixelSizeUm", "PixelSize_um"):
        try:
            nm = float(meta.get(key, "nan")) * 1000.0
        except (TypeError, ValueError):
            continue
        if nm > 0 and _plausible_pixel(nm):
            cal.set("pixel_size_nm", nm, f"file:Micro-Manager {key}")
    camera = meta.get("Camera")
    for prop, name in MM_CAMERA_PROPERTIES.items():  # "<camera label>-<property>" keys
        key = f"{camera}-{prop}"
        try:
            value = float(meta[key]) if isinstance(camera, str) and key in meta else None
        except (TypeError, ValueError):
            value = None
        if value is not None:
            value = max(1.0, value) if name == "em_gain" else value  # EMGain 0 = EM off
            cal.set(name, value, f"file:Micro-Manager {key}")
    for key in ("Exposure-ms", "Exposure"):
        try:
            exposure = float(meta.get(key, "nan"))
        except (TypeError, ValueError):
            continue
        if exposure > 0:
            cal.set("exposure_ms", exposure, f"file:Micro-Manager {key}")


def _from_imagej(tif: tifffile.TiffFile, cal: Calibration) -> None:
    meta = tif.imagej_metadata
    first = tif.pages.first
    if not isinstance(meta, dict) or first is None:
        return
    try:
        finterval_s = float(meta.get("finterval", 0.0))
    except (TypeError, ValueError):
        finterval_s = 0.0
    if finterval_s > 0:
        cal.set(FRAME_INTERVAL_KEY, finterval_s * 1000.0, "file:ImageJ finterval")
    scale = _unit_nm(str(meta.get("unit", "")), default="")
    tag = first.tags.get("XResolution")
    if scale is not None and tag is not None:
        num, den = tag.value
        if num > 0:
            nm = scale * den / num  # XResolution is pixels per unit
            if _plausible_pixel(nm):
                unit = str(meta["unit"]).replace("\\u00B5", "µ").replace("\\u00b5", "µ")
                label = f"file:ImageJ resolution ({num / den:g} px/{unit})"
                cal.set("pixel_size_nm", nm, label)


def read_calibration(tif: tifffile.TiffFile, description: str = "") -> Calibration:
    """Everything ``tif`` says about its camera, each value with its source."""
    cal = Calibration()
    ome = tif.ome_metadata
    for key, value in camera_from_tiff(description, ome).items():
        if key in CAMERA_KEYS or key == FRAME_INTERVAL_KEY:
            cal.set(key, value, "file:live_decode camera metadata")
    if ome:
        _from_ome(ome, cal)
    _from_micromanager(tif, cal)
    _from_imagej(tif, cal)
    return cal


_UNITS = {
    "pixel_size_nm": " nm",
    "baseline_adu": " ADU",
    "e_per_adu": " e⁻/ADU",
    "em_gain": "",
    "qe": "",
    "exposure_ms": " ms",
    "spurious_charge_e": " e⁻",
    "read_noise_e": " e⁻",
}


def describe_calibration(cal: Calibration) -> str:
    """One line: every camera value with its unit, grouped by where it came from."""
    by_source: dict[str, list[str]] = {}
    for key, value in cal.values.items():
        words = f"{key} {value:g}{_UNITS.get(key, '')}"
        by_source.setdefault(cal.sources.get(key, "?"), []).append(words)
    return "; ".join(f"{', '.join(v)} ({src})" for src, v in by_source.items())


def write_calibration(
    run_dir: Path,
    values: Mapping[str, float],
    sources: Mapping[str, str],
    files: list[str] | None = None,
) -> Path:
    """``run_dir/calibration.json``: the camera calibration a run used and where it came from."""
    run_dir.mkdir(parents=True, exist_ok=True)
    data: dict[str, object] = {
        "camera": {k: {"value": values[k], "source": sources.get(k, "?")} for k in values},
    }
    if files:
        data["files"] = files
    path = run_dir / CALIBRATION_NAME
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


_PLAUSIBLE_Z_STEP_NM = (1.0, 10_000.0)


def read_z_step_nm(path: Path) -> tuple[float, str] | None:
    """The plane spacing a z-stack TIFF records, nm, and where it came from; None if it does not.

    Read from OME ``Pixels`` ``PhysicalSizeZ`` (with its unit), Micro-Manager's summary
    ``z-step_um``, or ImageJ's ``spacing`` (in its ``unit``).
    """
    with tifffile.TiffFile(path) as tif:
        found: list[tuple[float | None, str]] = []
        if tif.ome_metadata:
            try:
                root = ET.fromstring(tif.ome_metadata)
            except ET.ParseError:
                root = None
            pixels = (
                next((el for el in root.iter() if _strip_ns(el.tag) == "Pixels"), None)
                if root is not None
                else None
            )
            if pixels is not None and pixels.get("PhysicalSizeZ") is not None:
                scale = _unit_nm(pixels.get("PhysicalSizeZUnit"))
                found.append((_times(pixels.get("PhysicalSizeZ"), scale), "file:OME PhysicalSizeZ"))
        mm = tif.micromanager_metadata
        summary = mm.get("Summary") if isinstance(mm, dict) else None
        if isinstance(summary, dict) and "z-step_um" in summary:
            found.append((_times(summary["z-step_um"], 1000.0), "file:Micro-Manager z-step_um"))
        ij = tif.imagej_metadata
        if isinstance(ij, dict) and "spacing" in ij:
            scale = _unit_nm(str(ij.get("unit", "")), default="µm")
            found.append((_times(ij["spacing"], scale), "file:ImageJ spacing"))
    for nm, source in found:
        if nm is not None and _PLAUSIBLE_Z_STEP_NM[0] <= nm <= _PLAUSIBLE_Z_STEP_NM[1]:
            return nm, source
    return None


def _times(value: object, scale: float | None) -> float | None:
    """float(value) × scale, or None where either is missing or not a number."""
    if scale is None:
        return None
    try:
        return float(str(value)) * scale
    except ValueError:
        return None
