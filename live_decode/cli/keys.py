"""``live-decode keys DIR``: make CURVE keys for serving beyond loopback."""

from __future__ import annotations

import argparse
from pathlib import Path

from live_decode.transport.curve import generate_key_set


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", type=Path, help="folder for the server and client key pairs")


def run(args: argparse.Namespace) -> int:
    directory = generate_key_set(args.directory)
    print(f"keys written to {directory}: server.key(_secret) stay on the acquisition machine;")
    print("copy server.key and client.key_secret to the machine that connects (viewer, worker).")
    return 0
