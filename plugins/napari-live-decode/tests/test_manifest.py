"""The npe2 manifest: valid, and every command it names imports."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[1] / "src" / "napari_live_decode" / "napari.yaml"


def test_npe2_validate_passes() -> None:
    npe2 = Path(sys.executable).with_name("npe2")
    done = subprocess.run(
        [str(npe2), "validate", str(MANIFEST)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_the_installed_plugin_is_this_manifest() -> None:
    from npe2 import PluginManifest

    installed = PluginManifest.from_distribution("napari-live-decode")
    assert installed.name == "napari-live-decode"
    names = {c.id for c in installed.contributions.commands or []}
    declared = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["contributions"]["commands"]
    assert names == {c["id"] for c in declared}


def test_every_command_imports() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    for command in manifest["contributions"]["commands"]:
        module, _, name = command["python_name"].partition(":")
        assert callable(getattr(importlib.import_module(module), name)), command["id"]


def test_importing_the_package_loads_neither_napari_nor_qt() -> None:
    code = (
        "import sys, napari_live_decode, napari_live_decode._readers, napari_live_decode._layers;"
        "print(sorted(m for m in ('napari', 'qtpy', 'PySide6') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
