"""``endpoints.json``: how a run directory tells a viewer where the run listens."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from live_decode.endpoints import RunEndpoints
from live_decode.errors import LiveDecodeError
from live_decode.io.run_dir import (
    ENDPOINTS_NAME,
    EndpointsRecord,
    endpoints_of_this_process,
    read_endpoints,
    run_status,
    write_endpoints,
)


def _endpoints(pid: int | None = None) -> EndpointsRecord:
    ep = RunEndpoints(
        frames="tcp://127.0.0.1:5555",
        results="tcp://127.0.0.1:5556",
        preview="tcp://127.0.0.1:5557",
    )
    return EndpointsRecord(ep, socket.gethostname(), pid, False)


def test_round_trip_as_strict_json(tmp_path: Path) -> None:
    ep = _endpoints(pid=1234)
    path = write_endpoints(tmp_path / "run", ep)
    assert path.name == ENDPOINTS_NAME
    body = json.loads(path.read_text(encoding="utf-8"))
    assert body == {  # the file format: one flat object
        "version": 1,
        "frames": "tcp://127.0.0.1:5555",
        "results": "tcp://127.0.0.1:5556",
        "preview": "tcp://127.0.0.1:5557",
        "control": None,
        "host": socket.gethostname(),
        "pid": 1234,
        "curve": False,
    }
    assert read_endpoints(tmp_path / "run") == ep
    assert not list((tmp_path / "run").glob("*.partial"))  # written atomically


def test_this_process_is_stamped() -> None:
    ep = endpoints_of_this_process(RunEndpoints(results="tcp://127.0.0.1:1"), curve=True)
    assert ep.pid == os.getpid() and ep.host == socket.gethostname() and ep.curve
    assert ep.endpoints.results == "tcp://127.0.0.1:1" and ep.endpoints.frames is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[]", "version 1"),
        ('{"version": 2, "results": "tcp://127.0.0.1:1"}', "version 1"),
        ('{"version": 1}', "results must be"),
        ('{"version": 1, "results": "tcp://x:1", "preview": 5}', "preview must be"),
        ('{"version": 1, "results": "tcp://x:1", "pid": NaN}', "NaN is not valid JSON"),
        ("{", "valid endpoints record"),
    ],
)
def test_bad_records_are_refused(tmp_path: Path, body: str, problem: str) -> None:
    (tmp_path / ENDPOINTS_NAME).write_text(body, encoding="utf-8")
    with pytest.raises(LiveDecodeError, match=problem):
        read_endpoints(tmp_path)


def test_missing_record_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(LiveDecodeError, match="give the run's address instead"):
        read_endpoints(tmp_path)


def test_live_finished_or_stale(tmp_path: Path) -> None:
    assert run_status(tmp_path) == "stale"  # nothing recorded
    write_endpoints(tmp_path, _endpoints(pid=os.getpid()))
    assert run_status(tmp_path) == "live"
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    write_endpoints(tmp_path, _endpoints(pid=int(gone.stdout)))
    assert run_status(tmp_path) == "stale"  # the supervisor died without a summary
    elsewhere = EndpointsRecord(RunEndpoints(results="tcp://10.0.0.2:1"), "another-host", 1, True)
    write_endpoints(tmp_path, elsewhere)
    assert run_status(tmp_path) == "live"  # cannot look at another host's processes
    (tmp_path / "summary.json").write_text("{}", encoding="utf-8")
    assert run_status(tmp_path) == "finished"
