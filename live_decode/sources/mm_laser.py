"""A laser (or any bounded numeric Micro-Manager property) as an actuator for the controller.

Real activation lasers differ in what they expose: a power in mW, a percentage, a pulse length.
:class:`MMPropertyActuator` drives whichever property the config names, within the limits the
device reports, and reads the value back so the controller always knows what was applied.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pymmcore_plus import PropertyType

from live_decode.sources.mm_core import MMDeviceError, require_property

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus

_NUMERIC = (PropertyType.Float, PropertyType.Integer)


class MMPropertyActuator:
    """One numeric, bounded, writable property of a Micro-Manager device.

    Parameters
    ----------
    core
        The core the device is loaded in.
    device_label, property_name
        E.g. ``"Laser405"``, ``"Power"``.

    Raises
    ------
    MMDeviceError
        If the device is not loaded, has no such property, or the property is read-only, not
        numeric, or unbounded (an actuator without limits cannot be kept safe).
    """

    def __init__(self, core: CMMCorePlus, device_label: str, property_name: str) -> None:
        what = f"actuator {device_label}.{property_name}"
        require_property(core, device_label, property_name, what)
        if core.isPropertyReadOnly(device_label, property_name):
            raise MMDeviceError(f"{what}: the property is read-only; name a writable one")
        kind = core.getPropertyType(device_label, property_name)
        if kind not in _NUMERIC:
            raise MMDeviceError(f"{what}: the property is of type {kind.name}, not a number")
        if not core.hasPropertyLimits(device_label, property_name):
            raise MMDeviceError(
                f"{what}: the device reports no limits for this property; an actuator needs "
                "bounds to be safe (choose a bounded property, e.g. a power or percentage)"
            )
        self._core = core
        self.device_label = device_label
        self.property_name = property_name
        self.name = f"{device_label}.{property_name}"
        self._integer = kind == PropertyType.Integer

    @property
    def limits(self) -> tuple[float, float]:
        """(lower, upper) as the device reports them now, in the property's unit."""
        core, dev, prop = self._core, self.device_label, self.property_name
        return (
            float(core.getPropertyLowerLimit(dev, prop)),
            float(core.getPropertyUpperLimit(dev, prop)),
        )

    def get(self) -> float:
        """The property's current value, read from the device."""
        return float(self._core.getProperty(self.device_label, self.property_name))

    def set(self, value: float) -> float:
        """Set the property and return the value read back (devices may round).

        Raises
        ------
        ValueError
            If ``value`` is not finite or outside :attr:`limits`; nothing is sent then.
        """
        lo, hi = self.limits
        v = float(value)
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ValueError(
                f"{value!r} is outside the limits [{lo:g}, {hi:g}] of {self.name}; "
                "nothing was sent to the device. Set a value within them."
            )
        self._core.setProperty(
            self.device_label, self.property_name, round(v) if self._integer else v
        )
        return self.get()

    def __repr__(self) -> str:
        return f"MMPropertyActuator({self.name!r}, limits={self.limits})"
