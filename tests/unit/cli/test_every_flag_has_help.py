"""Every argument of every command has a help text (`live-decode CMD --help` explains it all)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from live_decode.cli.main import build_parser


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_flag_and_argument_has_help() -> None:
    actions = list(_walk(build_parser(), "live-decode"))
    commands = {path for path, _ in actions}
    assert {"live-decode run", "live-decode view", "live-decode localize"} <= commands
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in actions
        if not (a.help or "").strip() or a.help == argparse.SUPPRESS
    ]
    assert not missing, f"arguments without help: {missing}"
