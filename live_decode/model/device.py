"""Device selection: ``auto`` means CUDA when present, else CPU. Probed on call, never at import.

The one resolver of every command and of the API (``inference.device``, ``--device``,
``ld.load_model(device=)``, ``ld.simulate(device=)``).
"""

from __future__ import annotations

import torch

from live_decode.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for ``auto | cpu | cuda | cuda:N``.

    Raises
    ------
    ConfigError
        If the name is not a device, or CUDA is asked for but not available (the message says
        what to pass instead).
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device {device!r}: {exc}; use {DEVICE_CHOICES}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available; use --device cpu "
            "(inference.device: cpu) or auto"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} is not supported; use {DEVICE_CHOICES}")
    return dev
