"""What the density controller drives: the ``Actuator`` contract.

An actuator is one number with limits: the activation laser's power in mW, or a pulse length where
that is what the hardware exposes. The contract is declared beside the sources that implement it
(:class:`live_decode.sources.base.Actuator`): ``live_decode.sources.mm_laser.MMPropertyActuator``
for any Micro-Manager property, ``live_decode.sources.simulated.SimulatedLaserActuator`` for the
simulated microscope; ``tests/unit/control/test_actuator_contract.py`` runs the same contract
against both. A source offers its laser through ``HasActivationLaser.activation_laser``.
"""

from __future__ import annotations

from live_decode.sources.base import Actuator, check_in_limits

__all__ = ["Actuator", "check_in_limits"]
