"""Entry point: ``live-decode <command> ...``."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from collections.abc import Sequence

from live_decode import __version__
from live_decode.errors import LiveDecodeError
from live_decode.pipeline.exits import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    interrupt_exit_code,
    raise_on_stop_signals,
)

# Sub-command name -> module in live_decode.cli with add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, str] = {
    "simulate": "Simulate an SMLM acquisition: OME-TIFF movie, ground-truth CSV, preview PNG.",
    "calibrate": "Estimate a setup (camera, PSF, photophysics) from a raw movie: setup.yaml.",
    "fit": "Your own microscope in one command: calibrate a raw movie, train for it, localize.",
    "train": "Train a DECODE network on simulations of a config; writes a checkpoint + model card.",
    "adapt": "Learn the microscope from a real movie (wake–sleep): adapted setup, model, report.",
    "evaluate": "Localize a movie with a model and score it against ground truth.",
    "thresholds": "Choose a trained model's detection thresholds again; rewrites its model card.",
    "run": "Run the live pipeline (source, worker, viewer) for a config and supervise it.",
    "demo": "Run the pipeline on the embedded default: simulated microscope + bundled model.",
    "localize": "Localize recorded movies offline through the worker; writes a run directory.",
    "source": "The source process: simulated microscope, replay or Micro-Manager.",
    "worker": "The inference worker process.",
    "view": "Watch a run live (or open a finished one): frames, image, density, laser, controls.",
    "keys": "Generate ZeroMQ CURVE keys (needed to bind a non-loopback address).",
}


DESCRIPTION = """\
Deep-learning localization for single-molecule localization microscopy (SMLM), live while the
camera acquires: a DECODE-style network localizes every frame of a simulated, replayed or
Micro-Manager stream, a viewer shows the super-resolution image as it builds up, and a feedback
loop holds the emitter density with the 405 nm activation laser."""

EPILOG = """\
first steps:
  live-decode demo                          simulated microscope + bundled model, with the viewer
  live-decode run configs/CONFIG.yaml       the live pipeline for your setup
  live-decode localize movie.ome.tif --out runs/offline
  live-decode view runs/RUN                 reopen the viewer on a live or finished run

`live-decode COMMAND --help` describes each command and its options."""

THIRD_PARTY_LEVEL = logging.WARNING
"""Other libraries' loggers (matplotlib, numba, PIL...) log at this level or above only."""


def _command_in(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names (its first non-option word), if it is one of ours."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the sub-command ``argv`` names is imported (all of them when None).

    Sub-command modules import torch, zmq or Qt; importing just the one that runs keeps
    ``live-decode --help`` and ``live-decode keys`` fast.
    """
    chosen = _command_in(argv) if argv is not None else None
    parser = argparse.ArgumentParser(
        prog="live-decode",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"live-decode {__version__}",
        help="print the version",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="debug logging from live_decode (other libraries stay at warnings)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if argv is None or name == chosen:
            module = importlib.import_module(f"live_decode.cli.{name}")
            module.add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def configure_logging(*, verbose: bool) -> None:
    """Log live_decode at INFO (DEBUG with ``verbose``) and every other library at WARNING.

    The root logger's level filters third-party loggers (their DEBUG lines would fill the run
    logs); the ``live_decode`` logger sets its own level, and its records reach the root handler.
    """
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(THIRD_PARTY_LEVEL)
    logging.getLogger("live_decode").setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(words).parse_args(words)
    configure_logging(verbose=args.verbose)
    if args.command != "view":  # Qt keeps the default: a signal in a slot would abort it
        raise_on_stop_signals()  # SIGTERM/SIGHUP clean up like Ctrl-C (run/source/worker: own)
    try:
        return int(args._module.run(args))
    except LiveDecodeError as exc:
        # A Micro-Manager core caught in a reference cycle must be freed before exit.
        gc.collect()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'SIGINT'})", file=sys.stderr)
        return interrupt_exit_code(exc)
    except OSError as exc:  # a full disk, an unwritable folder: say so, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
