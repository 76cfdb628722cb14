"""Auto-stop (``control.stop_when``): has the acquisition collected what it was run for?"""

from __future__ import annotations

import math

from live_decode.config import StopWhenConfig


def stop_reason(
    cfg: StopWhenConfig, *, frc_nm: float | None, localizations: int, minutes: float
) -> str | None:
    """Why the run should stop now (the first condition met), or None to go on.

    Parameters
    ----------
    frc_nm : float or None
        The latest live FRC resolution, nm (None or NaN: not computed yet).
    localizations : int
        Localizations so far.
    minutes : float
        Wall time since the run started.
    """
    frc_known = frc_nm is not None and math.isfinite(frc_nm)
    if cfg.frc_nm is not None and frc_known and frc_nm is not None and frc_nm <= cfg.frc_nm:
        return f"frc_nm: resolution {frc_nm:.1f} nm reached the target {cfg.frc_nm:g} nm"
    if cfg.localizations is not None and localizations >= cfg.localizations:
        return f"localizations: {localizations} reached the target {cfg.localizations:g}"
    if cfg.minutes is not None and minutes >= cfg.minutes:
        return f"minutes: {minutes:.1f} min reached the limit {cfg.minutes:g} min"
    return None
