"""Device selection: ``auto`` means CUDA when present, else CPU. Probed on call, never at import."""

from __future__ import annotations

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for ``auto | cpu | cuda | cuda:N``; a clear error if CUDA is missing."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return torch.device(device)
