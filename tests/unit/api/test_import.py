"""``import live_decode`` and ``live-decode --help`` stay light: no torch, ZeroMQ or Qt."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "zmq", "qtpy", "PySide6", "pyqtgraph", "pandas")


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after running ``code``."""
    heavy = f"[m for m in {HEAVY!r} if m in sys.modules]"
    probe = f"{code}\nimport sys\nprint('LOADED', *{heavy})"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.split("LOADED")[-1].split()


def test_import_live_decode_loads_no_torch_zmq_or_qt() -> None:
    assert _loaded_after("import live_decode as ld; ld.__all__; ld.load_config; ld.Config") == []


def _cli(*argv: str) -> str:
    return (
        "from live_decode.cli.main import main\n"
        f"try:\n    main({list(argv)!r})\nexcept SystemExit:\n    pass"
    )


def test_top_level_help_loads_no_torch() -> None:
    assert _loaded_after(_cli("--help")) == []


def test_keys_help_imports_only_its_own_command() -> None:
    assert "torch" not in _loaded_after(_cli("keys", "--help"))


def test_every_public_name_resolves() -> None:
    import live_decode as ld

    for name in ld.__all__:
        assert getattr(ld, name) is not None
    assert set(ld.__all__) <= set(dir(ld))


def test_unknown_name_is_an_attribute_error() -> None:
    import live_decode as ld

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ld.nope  # noqa: B018


def test_the_import_contracts_cover_every_room() -> None:
    """A new room (package or top-level module) cannot slip past the cli/testing contracts."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    package = root / "live_decode"
    rooms = {
        f"live_decode.{p.stem if p.suffix == '.py' else p.name}"
        for p in package.iterdir()
        if not p.name.startswith(("_", "."))
        and (p.suffix == ".py" or (p / "__init__.py").is_file())
    }
    contracts = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["importlinter"]
    by_name = {c["name"]: c for c in contracts["contracts"]}
    no_cli = by_name["Nothing in the package imports the CLI (it is a shell over the API)"]
    no_testing = by_name["Test harnesses (live_decode.testing) are never imported by runtime code"]
    assert set(no_cli["source_modules"]) == rooms - {"live_decode.cli"}
    assert set(no_testing["source_modules"]) == rooms - {"live_decode.testing"}
