"""The ``live-decode`` command line: one module per sub-command."""

from live_decode.cli.main import main

__all__ = ["main"]
