"""The top-level command line: description, --version, help on every flag, logging levels."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from live_decode import __version__
from live_decode.cli.main import build_parser, configure_logging


def test_top_level_help_describes_the_tool(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: live-decode")
    description = text.split("\n\n")[1]
    assert "single-molecule localization microscopy" in description
    assert "Entry point" not in text and "``" not in text  # no module docstring leaks in
    for command in ("demo", "run", "view", "localize", "train"):
        assert f"    {command}" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"live-decode {__version__}"


@pytest.fixture
def restore_levels() -> Iterator[None]:
    names = ("", "live_decode", "matplotlib")
    saved = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("verbose", [False, True])
def test_third_party_loggers_stay_at_warning(verbose: bool, restore_levels: None) -> None:
    configure_logging(verbose=verbose)
    ours = logging.getLogger("live_decode.cli.run")
    theirs = logging.getLogger("matplotlib.font_manager")
    assert ours.isEnabledFor(logging.DEBUG) is verbose
    assert ours.isEnabledFor(logging.INFO)
    assert not theirs.isEnabledFor(logging.INFO) and not theirs.isEnabledFor(logging.DEBUG)
    assert theirs.isEnabledFor(logging.WARNING)
