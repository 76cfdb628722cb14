"""The viewer's start-up checks of the Qt setup: X11 libraries named with their packages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from live_decode.cli.main import main
from live_decode.errors import LiveDecodeError
from live_decode.viewer import qt_check

pytest.importorskip("qtpy")


def _real_plugin() -> Path:
    from qtpy.QtCore import QLibraryInfo

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms/libqxcb.so"
    if not plugin.is_file() or shutil.which("ldd") is None:
        pytest.skip(f"needs PySide6's xcb plugin at {plugin} and ldd")
    return plugin


def _plugin_missing(tmp_path: Path, soname: str, replacement: str) -> Path:
    """A copy of the real xcb plugin whose ``soname`` dependency is renamed to a missing one.

    The copy sits in the same layout (plugins/platforms beside lib), so its RUNPATH
    ($ORIGIN/../../lib) still finds Qt's own libraries: only the renamed one is missing.
    """
    real = _real_plugin()
    qt = tmp_path / "Qt"
    (qt / "plugins" / "platforms").mkdir(parents=True)
    (qt / "lib").symlink_to(real.parents[2] / "lib")
    data = real.read_bytes()
    old, new = soname.encode() + b"\0", replacement.encode() + b"\0"
    assert len(old) == len(new) and old in data
    copy = qt / "plugins" / "platforms" / "libqxcb.so"
    copy.write_bytes(data.replace(old, new))
    return copy


@pytest.mark.parametrize(
    ("env", "platform", "xcb"),
    [
        ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False),
        ({"QT_QPA_PLATFORM": "xcb"}, "linux", True),
        ({"QT_QPA_PLATFORM": "xcb:foo=1"}, "linux", True),
        ({"DISPLAY": ":0"}, "linux", True),
        ({"DISPLAY": ":0", "XDG_SESSION_TYPE": "wayland"}, "linux", False),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", False),
        ({"DISPLAY": ":0"}, "darwin", False),
    ],
)
def test_which_platforms_need_xcb(env: dict[str, str], platform: str, xcb: bool) -> None:
    assert qt_check.uses_xcb(env, platform) is xcb


def test_a_missing_xcb_library_is_named(tmp_path: Path) -> None:
    plugin = _plugin_missing(tmp_path, "libxcb-cursor.so.0", "libxcb-cursoX.so.0")
    assert "libxcb-cursoX.so.0" in qt_check.missing_libraries(plugin)
    with pytest.raises(LiveDecodeError, match=r"needs .*libxcb-cursoX\.so\.0.*provide"):
        qt_check.check_platform_plugin({"QT_QPA_PLATFORM": "xcb"}, "linux", plugin)
    # Offscreen needs no X11 library: no complaint.
    qt_check.check_platform_plugin({"QT_QPA_PLATFORM": "offscreen"}, "linux", plugin)


def test_known_libraries_are_mapped_to_debian_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = _plugin_missing(tmp_path, "libxcb-cursor.so.0", "libxcb-cursoX.so.0")
    found = ["libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-icccm.so.4"]
    monkeypatch.setattr(qt_check, "missing_libraries", lambda _p: list(dict.fromkeys(found)))
    with pytest.raises(LiveDecodeError) as refused:
        qt_check.check_platform_plugin({"QT_QPA_PLATFORM": "xcb"}, "linux", plugin)
    assert "apt-get install libxcb-icccm4 libxcb-keysyms1`" in str(refused.value)
    makefile = (Path(__file__).parents[3] / "Makefile").read_text(encoding="utf-8")
    for package in set(qt_check.XCB_PACKAGES.values()):
        assert package in makefile, f"make sysdeps does not install {package}"


def test_the_real_plugin_loads_here_or_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """`live-decode view` under X11 either finds every library or exits 2 saying what to install."""
    plugin = _real_plugin()
    missing = qt_check.missing_libraries(plugin)
    env = {"QT_QPA_PLATFORM": "xcb"}
    if not missing:
        qt_check.check_platform_plugin(env, "linux", plugin)
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QT_QPA_PLATFORM", "xcb")
        code = main(["view", "127.0.0.1", "--control-port", "0", "--preview-port", "0"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the viewer cannot open a window")
    assert all(name in err for name in missing) and "apt-get install" in err
