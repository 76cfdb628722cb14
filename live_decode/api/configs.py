"""``ld.load_config``, ``ld.demo_config``: the typed config from a file, a mapping or the demo."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from live_decode.config import DEMO_CONFIG, Config, config_from_dict
from live_decode.config import load_config as _load_config_file

ConfigLike = Config | Mapping[str, Any] | str | Path
"""What the API accepts as a config: a :class:`Config`, a plain mapping, or a YAML file path."""


def load_config(config: ConfigLike) -> Config:
    """The validated, frozen config from a YAML file, a plain mapping, or a :class:`Config`.

    Parameters
    ----------
    config
        A path to a YAML file (relative paths inside it are relative to the file), a mapping with
        the same sections as the YAML files (``camera``, ``psf``, ``source``...; missing
        sections take their defaults), or a :class:`Config` (returned as is).

    Raises
    ------
    live_decode.errors.ConfigError
        If the file is missing or is not YAML, or a key or value is invalid; the message names
        the file (or ``<dict>``) and the key path of every problem.
    """
    if isinstance(config, Config):
        return config
    if isinstance(config, str | Path):
        return _load_config_file(config)
    return config_from_dict(dict(config))


def demo_config() -> Config:
    """The embedded demo config: a simulated EMCCD microscope that fits the bundled model."""
    return _load_config_file(DEMO_CONFIG)
