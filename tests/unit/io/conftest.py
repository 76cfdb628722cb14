"""Fixtures for the localization-file tests: the real files from other tools, and a crash helper."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


def _repo_root() -> Path:
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "pyproject.toml").is_file())


FORMATS_DIR = _repo_root().parent / "shared" / "data" / "formats"


@pytest.fixture
def formats_dir() -> Path:
    """``../shared/data/formats`` next to the repository (real files written by other tools)."""
    if not FORMATS_DIR.is_dir():
        pytest.skip(f"real format files not found at {FORMATS_DIR} (../shared is not checked out)")
    return FORMATS_DIR


@pytest.fixture
def crash_after() -> Callable[[str], None]:
    """Run ``code`` in a fresh interpreter that then dies with os._exit, without closing files."""

    def run(code: str) -> None:
        script = textwrap.dedent(code) + "\nimport os\nos._exit(3)\n"
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
        assert done.returncode == 3, done.stderr.decode()

    return run
