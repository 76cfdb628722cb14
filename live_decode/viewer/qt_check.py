"""Refuse a Qt binding that would crash the viewer after a few minutes.

Measured here: PySide6 6.12.0 on Python 3.11 drops one reference to ``None`` (and to ``True``)
on every call of a Qt method that returns nothing (``QLabel.setText``, ``processEvents``...). On
Python ≤ 3.11 these objects are not immortal, so a GUI that redraws at 25 Hz brings the count to
zero within minutes and the interpreter aborts ("Fatal Python error: none_dealloc"). PySide6
6.11.2 does not do this. The probe below costs microseconds.
"""

from __future__ import annotations

import sys

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
