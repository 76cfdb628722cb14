"""``live-decode simulate`` (being built)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("simulate is being built")
