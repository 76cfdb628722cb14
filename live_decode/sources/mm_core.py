"""Opening and closing a Micro-Manager core (pymmcore-plus), with errors that say what to do.

The only module besides :mod:`live_decode.sources.mm` and :mod:`live_decode.sources.mm_laser`
that calls pymmcore-plus's camelCase API.
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pymmcore_plus import DeviceInitializationState

from live_decode.errors import ConfigError, LiveDecodeError

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus
    from pymmcore_plus.experimental.unicore import UniMMCore

log = logging.getLogger("live_decode.sources.mm")


InitFailed = DeviceInitializationState.InitializationFailed


class MMDeviceError(LiveDecodeError):
    """A Micro-Manager device, property or configuration file cannot be used as asked."""


def open_core(system_config: Path, adapter_path: Path | None = None) -> UniMMCore:
    """A core with the devices of ``system_config`` loaded and initialized.

    A ``UniMMCore`` drives both kinds of devices: C++ adapters and the Python devices that
    ``#py pyDevice,...`` lines load.

    Parameters
    ----------
    system_config
        Micro-Manager ``.cfg`` file.
    adapter_path
        Folder with the C++ device adapters; None = pymmcore-plus's search (a Micro-Manager
        installation, ``mmcore install``, or the ``mm-test-adapters`` package).

    Raises
    ------
    ConfigError
        If the file or the adapter folder does not exist.
    MMDeviceError
        If Micro-Manager cannot load the file; the message has the line and the reason.
    """
    from pymmcore_plus.experimental.unicore import UniMMCore

    if not system_config.is_file():
        raise ConfigError(
            f"{system_config}: Micro-Manager config file not found "
            "(source.system_config; relative paths are from the YAML file)"
        )
    if adapter_path is not None and not adapter_path.is_dir():
        raise ConfigError(
            f"{adapter_path}: device adapter folder not found "
            "(source.adapter_path; leave it out to use pymmcore-plus's search)"
        )
    core = UniMMCore(mm_path=str(adapter_path)) if adapter_path else UniMMCore()
    failure = _load(core, system_config)
    if failure is None:
        return core
    searched = ", ".join(core.getDeviceAdapterSearchPaths()) or "none"
    discard_core(core)
    del core  # (raised outside the except block: no traceback keeps the core alive)
    gc.collect()
    raise MMDeviceError(
        f"{system_config}: Micro-Manager could not load this configuration:\n  {failure}\n"
        f"Check the device names and that their adapters are installed (searched: "
        f"{searched}); Python devices need an importable module on '#py pyDevice' lines."
    )


def _load(core: UniMMCore, system_config: Path) -> str | None:
    """Load ``system_config`` into ``core``; the reason it failed, or None."""
    errors = _ErrorRecords()
    loggers = [logging.getLogger(n) for n in ("pymmcore-plus", "pymmcore_plus")]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        core.loadSystemConfiguration(str(system_config))
        # A Python device whose initialize() raised is logged, not raised, by pymmcore-plus.
        failed = [
            d
            for d in core.getLoadedDevices()
            if d != "Core" and core.getDeviceInitializationState(d) == InitFailed
        ]
        return f"device(s) {failed} failed to initialize: {errors.reasons()}" if failed else None
    except Exception as exc:  # pymmcore raises RuntimeError/ValueError/ImportError/...
        return str(exc)
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
        errors.records.clear()


class _ErrorRecords(logging.Handler):
    """Collects the reasons pymmcore-plus logs (instead of raising) while a config loads."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def reasons(self) -> str:
        exc = [r.exc_info[1] for r in self.records if r.exc_info and r.exc_info[1]]
        return "; ".join(str(e) for e in exc) or "see the log"


def discard_core(core: CMMCorePlus) -> None:
    """:func:`close_core`, never raising: for error paths, where the first error matters."""
    try:
        close_core(core)
    except Exception as exc:
        log.warning("unloading the Micro-Manager devices failed: %s", exc)


def close_core(core: CMMCorePlus) -> None:
    """Stop acquisition and unload every device.

    Then drop every reference to the core: pymmcore's callback thread can abort a finalizing
    interpreter (SIGABRT) when a core is still alive at exit. A core is in no reference cycle
    (checked for ``UniMMCore`` with the simulated devices), so the last ``del`` frees it.
    """
    try:
        if core.isSequenceRunning():
            core.stopSequenceAcquisition()
    except Exception as exc:  # a failing camera must not keep the other devices loaded
        log.warning("stopping the acquisition failed while closing the core: %s", exc)
    core.unloadAllDevices()


def require_device(core: CMMCorePlus, label: str, what: str) -> None:
    """Raise :class:`MMDeviceError` unless device ``label`` is loaded (``what``: its role)."""
    loaded = [d for d in core.getLoadedDevices() if d != "Core"]
    if label not in loaded:
        raise MMDeviceError(
            f"{what}: no device {label!r} is loaded in Micro-Manager; loaded devices: "
            f"{', '.join(loaded) or 'none'}. Check the label in the config and the .cfg file."
        )


def require_property(core: CMMCorePlus, label: str, prop: str, what: str) -> None:
    """Raise :class:`MMDeviceError` unless device ``label`` has property ``prop``."""
    require_device(core, label, what)
    if not core.hasProperty(label, prop):
        names = ", ".join(core.getDevicePropertyNames(label))
        raise MMDeviceError(
            f"{what}: device {label!r} has no property {prop!r}; its properties: {names}"
        )
