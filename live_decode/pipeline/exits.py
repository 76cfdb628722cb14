"""Why a process of a run ended: exit codes, the ``<role>_exit.json`` record, signals.

Every command of a run ends with one of a few exit codes, and the source and worker processes
also leave ``<role>_exit.json`` in the run directory saying why, so the supervisor can tell a
refused model (no use restarting) from a crash (restart) and keep the reason in ``summary.json``:

===========  ====  =========================================================================
status       code  meaning
===========  ====  =========================================================================
done         0     the stream ended, a limit was reached, or the process was asked to stop
refused      2     the model does not fit the camera/config (:class:`ModelCardError`)
bad_input    2     a bad config, movie, key or value (:class:`LiveDecodeError`)
io_error     1     the run directory cannot be written (disk full, read-only, no permission)
crashed      1     anything else (a bug, ...)
killed       -N    killed by signal N before it could say anything (no record)
===========  ====  =========================================================================

``run``/``localize`` themselves exit 130 on SIGINT and 143 on SIGTERM or SIGHUP.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

from live_decode.errors import LiveDecodeError, ModelCardError
from live_decode.strict_json import write_json

log = logging.getLogger("live_decode.pipeline")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

Status = Literal["done", "refused", "bad_input", "io_error", "crashed", "killed"]
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
"""OS errors a restart cannot cure: the disk is full, read-only or not ours."""
PARENT_PID_ENV = "LIVE_DECODE_PARENT_PID"
"""Set by the supervisor for its children: they stop (SIGTERM) when it dies."""


@dataclass(frozen=True)
class ChildExit:
    """How one process of a run ended."""

    role: str
    status: Status
    exit_code: int
    reason: str

    @property
    def restartable(self) -> bool:
        """Only a crash or an unexplained kill is worth a restart; a refusal would repeat."""
        return self.status in ("crashed", "killed")


def exit_path(out: Path, role: str) -> Path:
    return out / f"{role}_exit.json"


def record_exit(out: Path | None, record: ChildExit) -> None:
    """Leave ``record`` as ``<role>_exit.json`` in ``out`` (best effort: a full disk is logged)."""
    if out is None:
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(exit_path(out, record.role), asdict(record))
    except OSError as exc:
        log.error("cannot write %s: %s", exit_path(out, record.role), exc)


def read_exit(out: Path, role: str) -> ChildExit | None:
    """The record a child left, or None (none, or unreadable)."""
    try:
        data = json.loads(exit_path(out, role).read_text(encoding="utf-8"))
        return ChildExit(
            role=str(data["role"]),
            status=data["status"],
            exit_code=int(data["exit_code"]),
            reason=str(data["reason"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def clear_exit(out: Path, role: str) -> None:
    """Forget the record of a previous process of ``role`` (before starting a new one)."""
    exit_path(out, role).unlink(missing_ok=True)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify(role: str, returncode: int, record: ChildExit | None) -> ChildExit:
    """How a child ended, from its exit status and the record it left (if it matches)."""
    if returncode < 0:
        if record is not None and record.status == "done":
            return record  # it had finished; a signal only cut its interpreter's shutdown short
        return ChildExit(role, "killed", returncode, f"{role} killed by {signal_name(-returncode)}")
    if record is not None and record.exit_code == returncode:
        return record
    status: Status = "crashed"
    if returncode == EXIT_OK:
        status = "done"
    elif returncode == EXIT_BAD_INPUT:
        status = "bad_input"
    return ChildExit(role, status, returncode, f"{role} exited with {returncode}")


def run_recorded(role: str, out: Path | None, body: Callable[[], tuple[int, str]]) -> int:
    """Run a process body returning ``(exit code, why it ended)``; record that in ``out``.

    Exceptions are recorded (refused, bad input, crashed) and passed on.
    """
    try:
        code, reason = body()
    except ModelCardError as exc:
        record_exit(out, ChildExit(role, "refused", EXIT_BAD_INPUT, str(exc)))
        raise
    except LiveDecodeError as exc:
        record_exit(out, ChildExit(role, "bad_input", EXIT_BAD_INPUT, str(exc)))
        raise
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            record_exit(out, ChildExit(role, "crashed", EXIT_FAILED, f"{role} crashed: {exc}"))
            raise
        reason = f"{role} cannot write its files: {exc}"
        record_exit(out, ChildExit(role, "io_error", EXIT_FAILED, reason))
        raise
    except KeyboardInterrupt as exc:
        code = interrupt_exit_code(exc)
        record_exit(out, ChildExit(role, "done", code, f"stopped by {exc or 'SIGINT'}"))
        raise
    except BaseException as exc:
        reason = f"{role} crashed: {type(exc).__name__}: {exc}"
        record_exit(out, ChildExit(role, "crashed", EXIT_FAILED, reason))
        raise
    record_exit(out, ChildExit(role, "done", code, reason))
    return code


def exit_with_parent() -> None:
    """Linux: ask for SIGTERM when the supervisor that started us dies (no orphaned camera).

    Only when started by a supervisor (:data:`PARENT_PID_ENV` set); elsewhere a no-op.
    """
    parent = os.environ.get(PARENT_PID_ENV)
    if parent is None or not parent.isdigit():
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def raise_on_stop_signals() -> None:
    """SIGTERM and SIGHUP raise :class:`StopSignal` in the main thread (as SIGINT raises
    KeyboardInterrupt): for in-process commands (``localize``, ``train``...)."""

    def handler(signum: int, _: FrameType | None) -> None:
        raise StopSignal(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, handler)


def interrupt_exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + (exc.signum if isinstance(exc, StopSignal) else int(signal.SIGINT))
