"""The run directory: what a run writes there, and never replacing an earlier run by accident."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from live_decode.errors import ConfigError

log = logging.getLogger("live_decode.pipeline")

RESULT_FILES = (
    "locs.csv",
    "locs.hdf5",
    "locs.yaml",
    "raw.ome.tif",
    "summary.json",
    "worker_summary.json",
)
"""A directory holding any of these holds the results of an earlier run."""
RUN_FILES = (
    *RESULT_FILES,
    "source_summary.json",
    "worker_exit.json",
    "source_exit.json",
    "control.csv",
    "control.png",
    "density.png",
    "reconstruction.png",
    "endpoints.json",
    "calibration.json",
)
RUN_DIRS = ("logs",)


def earlier_results(out: Path) -> list[str]:
    """The names of an earlier run's result files in ``out`` (empty if none)."""
    return [name for name in RESULT_FILES if (out / name).exists()]


def prepare_run_dir(out: Path, *, overwrite: bool) -> None:
    """Create ``out``; refuse one that holds an earlier run's results unless ``overwrite``.

    With ``overwrite`` the earlier run's files (and only those: :data:`RUN_FILES`, ``logs/``)
    are deleted first, so nothing of the old run mixes into the new one.

    Raises
    ------
    ConfigError
        ``out`` holds results and ``overwrite`` is False; ``out`` is not a directory or cannot
        be created or written (the message names the OS error).
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; choose another --out")
    found = earlier_results(out) if out.is_dir() else []
    if found and not overwrite:
        raise ConfigError(
            f"{out} already holds the results of a run ({', '.join(found)}); choose another "
            "--out, or pass --overwrite to replace them"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
            for name in RUN_DIRS:
                shutil.rmtree(out / name, ignore_errors=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{out}: cannot write the run directory ({exc.strerror or exc}); "
            "choose a writable --out"
        ) from None
