"""Refuse a Qt setup that would crash the viewer: a leaking binding, missing X11 libraries.

Measured here: PySide6 6.12.0 on Python 3.11 drops one reference to ``None`` (and to ``True``)
on every call of a Qt method that returns nothing (``QLabel.setText``, ``processEvents``...). On
Python ≤ 3.11 these objects are not immortal, so a GUI that redraws at 25 Hz brings the count to
zero within minutes and the interpreter aborts ("Fatal Python error: none_dealloc"). PySide6
6.11.2 does not do this. The probe below costs microseconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from live_decode.errors import LiveDecodeError

_CALLS = 64


def check_qt_binding() -> None:
    """Raise :class:`LiveDecodeError` if the Qt binding loses references to ``None``."""
    if sys.version_info >= (3, 12):  # None is immortal: a lost reference is harmless
        return
    import qtpy
    from qtpy.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(_CALLS):
        probe.setObjectName("live_decode_probe")
    lost = before - sys.getrefcount(None)
    if lost >= _CALLS // 2:
        raise LiveDecodeError(
            f"{qtpy.API_NAME} {_binding_version()} loses a reference to None on every Qt call "
            f"under Python {sys.version_info.major}."
            f"{sys.version_info.minor}; the viewer would abort within minutes. Install another "
            "version: pip install 'PySide6-Essentials>=6.6,<6.12' (6.11.2 is known good)"
        )


def _binding_version() -> str:
    import qtpy

    return str(getattr(qtpy, "PYSIDE_VERSION", None) or getattr(qtpy, "PYQT_VERSION", "?"))


XCB_PACKAGES: Final[Mapping[str, str]] = {
    "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
}
"""Libraries PySide6's xcb platform plugin links (``readelf -d`` of ``platforms/libqxcb.so`` and
``libQt6XcbQpa.so.6``) -> the Debian/Ubuntu package that ships each (the Makefile's sysdeps)."""


def uses_xcb(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """True if Qt will open its window through X11 (the xcb platform plugin)."""
    env = os.environ if environ is None else environ
    if not (sys.platform if platform is None else platform).startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(":", 1)[0].split(";", 1)[0] == "xcb"
    return bool(env.get("DISPLAY")) and env.get("XDG_SESSION_TYPE") != "wayland"


def missing_libraries(plugin: Path) -> list[str]:
    """The shared libraries ``plugin`` needs that the dynamic loader cannot find (by ``ldd``).

    Empty when all are found, or when ``ldd`` is not available to tell.
    """
    try:
        listing = subprocess.run(
            ["ldd", str(plugin)], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    missing: list[str] = []
    for line in listing.splitlines():
        name, _, where = line.strip().partition(" => ")
        if where.strip() == "not found" and name not in missing:
            missing.append(name)
    return missing


def check_platform_plugin(
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
    plugin: Path | None = None,
) -> None:
    """Raise :class:`LiveDecodeError` naming what to install if Qt's xcb plugin cannot load.

    Qt itself would print a hint and abort the process (no Python exception to catch), so this
    checks before the QApplication is made. Only the X11 (xcb) path is checked: offscreen,
    Wayland, macOS and Windows need no extra system libraries.

    Parameters
    ----------
    plugin
        The xcb plugin file; default: ``platforms/libqxcb.so`` in the Qt binding's plugin folder.
    """
    if not uses_xcb(environ, platform):
        return
    if plugin is None:
        from qtpy.QtCore import QLibraryInfo

        plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath))
        plugin = plugins / "platforms" / "libqxcb.so"
    if not plugin.is_file():
        return  # another Qt layout: let Qt report it
    missing = missing_libraries(plugin)
    if not missing:
        return
    packages = sorted({XCB_PACKAGES[name] for name in missing if name in XCB_PACKAGES})
    unknown = [name for name in missing if name not in XCB_PACKAGES]
    advice = []
    if packages:
        advice.append(
            "on Debian/Ubuntu install them with `sudo apt-get install "
            + " ".join(packages)
            + "` (or `make sysdeps`)"
        )
    if unknown:
        advice.append("install the packages that provide " + ", ".join(unknown))
    raise LiveDecodeError(
        f"the viewer cannot open a window: Qt's X11 plugin {plugin} needs "
        f"{', '.join(missing)}, not found on this machine; "
        + "; ".join(advice)
        + ". Or go without a window: `live-decode run --headless`, or QT_QPA_PLATFORM=offscreen "
        "for a screenshot."
    )
