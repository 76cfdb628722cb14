"""The run directory's record of where a live run listens: ``endpoints.json``.

``live-decode run`` writes it when its processes start, so a viewer can join the run later from
the directory alone (``live-decode view RUN_DIR``), and ``summary.json`` when the run ends. The
file is strict JSON, one object::

    {"version": 1, "frames": "tcp://127.0.0.1:5555", "results": "tcp://127.0.0.1:5556",
     "preview": "tcp://127.0.0.1:5557", "control": "tcp://127.0.0.1:5558",
     "host": "lab-pc", "pid": 4242, "curve": false}

``preview`` and ``control`` may be null (a run without them); ``pid`` is the supervisor's process
on ``host`` (it tells a live run from one that died without its summary); ``curve`` says whether
the sockets need CURVE keys (``--keys``).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from live_decode.endpoints import RunEndpoints
from live_decode.errors import LiveDecodeError

ENDPOINTS_NAME: Final = "endpoints.json"
SUMMARY_NAME: Final = "summary.json"
ENDPOINTS_VERSION: Final = 1

RunStatus = Literal["live", "finished", "stale"]


@dataclass(frozen=True)
class EndpointsRecord:
    """``endpoints.json``: where one run's sockets listen and who started them (``host``,
    ``pid``), and whether they need CURVE keys."""

    endpoints: RunEndpoints
    host: str = ""
    pid: int | None = None
    curve: bool = False


def write_endpoints(run_dir: Path, record: EndpointsRecord) -> Path:
    """Write ``run_dir/endpoints.json`` atomically (a reader never sees half a file)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ENDPOINTS_NAME
    ep = record.endpoints
    body = {
        "version": ENDPOINTS_VERSION,
        "frames": ep.frames,
        "results": ep.results,
        "preview": ep.preview,
        "control": ep.control,
        "host": record.host,
        "pid": record.pid,
        "curve": record.curve,
    }
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(body, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    partial.replace(path)
    return path


def endpoints_of_this_process(endpoints: RunEndpoints, curve: bool) -> EndpointsRecord:
    """The record of ``endpoints`` stamped with this host and process id (for the supervisor)."""
    return EndpointsRecord(endpoints, socket.gethostname(), os.getpid(), curve)


def read_endpoints(run_dir: Path) -> EndpointsRecord:
    """Read ``run_dir/endpoints.json``.

    Raises
    ------
    LiveDecodeError
        If the file is missing or not a version-1 endpoints record; the message says what to do.
    """
    path = run_dir / ENDPOINTS_NAME
    if not path.is_file():
        raise LiveDecodeError(
            f"{path} not found: {run_dir} is not a run directory of a live run (a run records "
            "its endpoints when it starts); give the run's address instead: "
            "live-decode view HOST --results-port ..."
        )
    try:
        body = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject)
        if not isinstance(body, dict) or body.get("version") != ENDPOINTS_VERSION:
            raise ValueError(f"expected an object with version {ENDPOINTS_VERSION}")
        fields = {k: body.get(k) for k in ("frames", "preview", "control")}
        for name, value in fields.items():
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be an endpoint string or null, got {value!r}")
        results, host, pid = body.get("results"), body.get("host", ""), body.get("pid")
        if not isinstance(results, str):
            raise ValueError(f"results must be an endpoint string, got {results!r}")
        if not isinstance(host, str) or not (pid is None or type(pid) is int):
            raise ValueError(f"host must be a string and pid an integer, got {host!r}, {pid!r}")
        endpoints = RunEndpoints(
            frames=fields["frames"],
            results=results,
            preview=fields["preview"],
            control=fields["control"],
        )
        return EndpointsRecord(endpoints, host, pid, body.get("curve") is True)
    except ValueError as exc:
        raise LiveDecodeError(f"{path} is not a valid endpoints record: {exc}") from None


def _reject(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def run_status(run_dir: Path) -> RunStatus:
    """``finished`` (``summary.json`` written), ``live``, or ``stale`` (no summary, and the
    supervisor recorded in ``endpoints.json`` is gone from this host, or nothing was recorded).

    A run started on another host counts as live while it has no summary.
    """
    if (run_dir / SUMMARY_NAME).is_file():
        return "finished"
    if not (run_dir / ENDPOINTS_NAME).is_file():
        return "stale"
    ep = read_endpoints(run_dir)
    if ep.pid is None or ep.host not in ("", socket.gethostname()):
        return "live"
    return "live" if _process_exists(ep.pid) else "stale"


def _process_exists(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there: cannot tell
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by someone else
        return True
    return True
