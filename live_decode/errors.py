"""The errors live_decode raises on purpose. Each message says what is wrong and what to do."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class LiveDecodeError(Exception):
    """Base class: an error with a message meant for the user."""


class ConfigError(LiveDecodeError):
    """A configuration file is missing, malformed or has an invalid value."""


class CalibrationError(LiveDecodeError):
    """A PSF calibration file (SMAP ``*_3dcal.mat``, z-stack) cannot be used."""


class ModelCardError(LiveDecodeError):
    """A model checkpoint does not match the data it is asked to analyse."""


class MovieError(LiveDecodeError):
    """A movie file is missing, truncated, corrupt, or of a dtype/size we cannot analyse."""


class ProtocolError(LiveDecodeError):
    """A wire message (DESIGN.md §2) is malformed, of an unknown version or kind, or too large."""


class LocalizationFileError(LiveDecodeError):
    """A localization file (ThunderSTORM CSV, Picasso HDF5, DECODE h5) cannot be read or written."""


def error_if_none(value: T | None, message: str) -> T:
    """Return ``value``, or raise :class:`LiveDecodeError` with ``message`` if it is None."""
    if value is None:
        raise LiveDecodeError(message)
    return value
