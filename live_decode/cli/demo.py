"""``live-decode demo``: ``run`` on the embedded default (simulated microscope + bundled model)."""

from __future__ import annotations

import argparse

from live_decode.cli import run as run_cmd


def add_arguments(p: argparse.ArgumentParser) -> None:
    run_cmd.add_run_arguments(p)
    p.set_defaults(frames=600)


def run(args: argparse.Namespace) -> int:
    args.config = None
    return run_cmd.run(args)
