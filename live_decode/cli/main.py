"""Entry point: ``live-decode <command> ...``."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from collections.abc import Sequence

from live_decode.errors import LiveDecodeError

# Sub-command name -> module in live_decode.cli with add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "simulate": "Simulate an SMLM acquisition: OME-TIFF movie, ground-truth CSV, preview PNG.",
    "train": "Train a DECODE network on simulations of a config; writes a checkpoint + model card.",
    "evaluate": "Localize a movie with a model and score it against ground truth.",
    "run": "Run the live pipeline (source, worker, viewer) for a config and supervise it.",
    "demo": "Run the pipeline on the embedded default: simulated microscope + bundled model.",
    "localize": "Localize recorded movies offline through the worker; writes a run directory.",
    "source": "The source process: simulated microscope, replay or Micro-Manager.",
    "worker": "The inference worker process.",
    "view": "Watch a run live: raw frames, super-resolution image, density, laser, controls.",
    "keys": "Generate ZeroMQ CURVE keys (needed to bind a non-loopback address).",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="live-decode", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"live_decode.cli.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._module.run(args))
    except LiveDecodeError as exc:
        # A Micro-Manager core caught in a reference cycle must be freed before exit.
        gc.collect()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
