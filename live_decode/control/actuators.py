"""What the density controller drives: the ``Actuator`` contract and the simulated 405 nm laser.

An actuator is one number with limits: the activation laser's power in mW, or a pulse length where
that is what the hardware exposes. Real hardware lives with its source
(``live_decode.sources.mm_laser.MMPropertyActuator`` for any Micro-Manager property); the simulated
laser here is a drop-in for it, and ``tests/unit/control/test_actuator_contract.py`` runs the same
contract against both.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from live_decode.sources.simulated import SimulatedSource


@runtime_checkable
class Actuator(Protocol):
    """One settable value with hard limits.

    Attributes
    ----------
    name : str
        Human-readable label for logs and the control trace, e.g. ``"405 nm (simulated)"``.
    limits : (float, float)
        (lowest, highest) value the device accepts, in the actuator's unit (mW for power).
    """

    @property
    def name(self) -> str: ...

    @property
    def limits(self) -> tuple[float, float]: ...

    def get(self) -> float:
        """The value now applied."""
        ...

    def set(self, value: float) -> float:
        """Apply ``value``; return the value applied.

        Raises
        ------
        ValueError
            If ``value`` is not finite or lies outside :attr:`limits`; nothing is changed then.
        """
        ...


def check_in_limits(name: str, value: float, limits: tuple[float, float], unit: str = "") -> float:
    """``value`` as a float if finite and within ``limits``, else a ``ValueError`` naming both."""
    lo, hi = limits
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(
            f"{name}: {value!r}{unit} is outside the limits [{lo:g}, {hi:g}]{unit}; "
            "ask for a value within them"
        )
    return v


class SimulatedLaserActuator:
    """The 405 nm laser of a :class:`~live_decode.sources.simulated.SimulatedSource`, in mW.

    Parameters
    ----------
    source
        The simulated source whose ``laser_power_mw`` is driven; its ``laser_limits_mw`` are the
        limits (0 to ``microscope.laser.max_power_mw``).
    """

    def __init__(self, source: SimulatedSource, name: str = "405 nm (simulated)") -> None:
        self._source = source
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def limits(self) -> tuple[float, float]:
        lo, hi = self._source.laser_limits_mw
        return (float(lo), float(hi))

    def get(self) -> float:
        """Laser power now, mW."""
        return float(self._source.laser_power_mw)

    def set(self, value: float) -> float:
        """Set the laser power (mW) and return it; ``ValueError`` outside :attr:`limits`."""
        power_mw = check_in_limits(self._name, value, self.limits, " mW")
        self._source.laser_power_mw = power_mw
        return self.get()
