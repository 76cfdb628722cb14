"""``live-decode evaluate MODEL MOVIE GROUND_TRUTH``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path)
    p.add_argument("movie", type=Path)
    p.add_argument("ground_truth", type=Path)
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("evaluate is being built")
