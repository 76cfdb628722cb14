"""Whether a window can open here: the one display check of ``run``, ``demo`` and ``view``."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from live_decode.errors import LiveDecodeError


def display_available(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> bool:
    """True if a Qt window can be opened: a display on Linux/BSD, or ``QT_QPA_PLATFORM`` set.

    ``live-decode run`` starts the viewer only when this holds; ``live-decode view`` refuses to
    start without it (:func:`check_display`). ``environ`` and ``platform`` default to this
    process's (``os.environ``, ``sys.platform``).
    """
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if env.get("QT_QPA_PLATFORM"):
        return True
    if plat.startswith("linux") or "bsd" in plat:
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True  # macOS and Windows always have a window system


def check_display(environ: Mapping[str, str] | None = None, platform: str | None = None) -> None:
    """Raise a :class:`LiveDecodeError` that says what to do when there is no display."""
    if not display_available(environ, platform):
        raise LiveDecodeError(
            "no display: DISPLAY and WAYLAND_DISPLAY are unset and QT_QPA_PLATFORM is not set. "
            "Run the viewer on a machine with a screen (or `ssh -X`), pointing it at this host "
            "with --keys for a remote run; for a picture without a screen use "
            "QT_QPA_PLATFORM=offscreen live-decode view ADDRESS --seconds 10 --screenshot view.png"
        )
