"""``live-decode run CONFIG``: start source, worker (and viewer) as processes and supervise them.

Argument parsing and the console dashboard only; the run itself is
:func:`live_decode.pipeline.supervisor.run_pipeline`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from live_decode.pipeline.supervisor import RunOptions, RunState, run_pipeline


def add_config_argument(p: argparse.ArgumentParser) -> None:
    """The optional CONFIG positional of the pipeline commands."""
    p.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="YAML config (default: the embedded demo)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_argument(p)
    add_run_arguments(p)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=None, help="stop after N frames")
    p.add_argument("--seconds", type=float, default=None, help="stop after S seconds")
    p.add_argument("--out", type=Path, default=None, help="run directory (default runs/<time>)")
    p.add_argument("--headless", action="store_true", help="never open the viewer window")
    p.add_argument("--model", type=Path, default=None, help="model file (default: config/bundled)")
    p.add_argument("--replay", type=Path, nargs="+", default=None, help="replay these movies")
    p.add_argument("--realtime", action="store_true", help="replay at camera speed, dropping")
    p.add_argument(
        "--no-raw",
        action="store_true",
        help="do not keep the acquired frames (raw.ome.tif in the run directory; on by default "
        "for a live source)",
    )
    p.add_argument(
        "--ignore-model-mismatch",
        action="store_true",
        help="run even if the model card does not fit the setup (a warning is kept)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run in --out (refused otherwise)",
    )
    p.add_argument(
        "--no-dashboard",
        action="store_true",
        help=f"a plain status line every {STATUS_PERIOD_S:g} s instead of the live table "
        "(for logs and pipes)",
    )


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        config=args.config,
        frames=args.frames,
        seconds=args.seconds,
        out=args.out,
        headless=args.headless,
        model=args.model,
        replay=tuple(args.replay) if args.replay else None,
        realtime=args.realtime,
        ignore_model_mismatch=args.ignore_model_mismatch,
        record_raw=not args.no_raw,
        overwrite=args.overwrite,
    )


def dashboard(state: RunState) -> Table:
    """The console table of a running run."""
    t = Table(title="live_decode", show_header=False, min_width=48)
    density = state.recent_density_per_um2()
    w = state.worker
    t.add_row("frames localized", str(state.frames_localized))
    t.add_row("localizations", str(state.localizations))
    shown = f"{density:.2f} /µm²/frame" if density is not None else "-"
    t.add_row("density (last 50 frames)", shown)
    t.add_row("worker frames/s", f"{w.fps:.1f}" if w else "-")
    t.add_row("latency", f"{w.latency_ms:.0f} ms" if w else "-")
    t.add_row("dropped upstream", str(w.dropped_upstream) if w else "0")
    t.add_row("worker restarts", str(state.restarts))
    t.add_row("errors", str(state.n_errors))
    return t


STATUS_PERIOD_S = 2.0
"""With ``--no-dashboard``, one status line this often."""


def status_line(state: RunState) -> str:
    """The dashboard's figures on one line, for ``--no-dashboard``."""
    density = state.recent_density_per_um2()
    w = state.worker
    parts = [
        f"frames {state.frames_localized:,}",
        f"locs {state.localizations:,}",
        "density " + ("-" if density is None else f"{density:.2f}/µm²"),
        "worker " + ("-" if w is None else f"{w.fps:.1f} frames/s"),
        "latency " + ("-" if w is None else f"{w.latency_ms:.0f} ms"),
        f"dropped {w.dropped_upstream if w else 0}",
        f"restarts {state.restarts}",
        f"errors {state.n_errors}",
    ]
    return " | ".join(parts)


class PlainStatus:
    """``on_update`` for ``--no-dashboard``: prints :func:`status_line` every ``period_s``."""

    def __init__(self, period_s: float = STATUS_PERIOD_S) -> None:
        self.period_s = period_s
        self._last_s: float | None = None
        self._state: RunState | None = None
        self._printed = ""

    def __call__(self, state: RunState) -> None:
        self._state = state
        now = time.monotonic()
        if self._last_s is None or now - self._last_s >= self.period_s:
            self._last_s = now
            self._print(state)

    def final(self) -> None:
        """The last state seen, unless that line was printed already."""
        if self._state is not None:
            self._print(self._state)

    def _print(self, state: RunState) -> None:
        line = status_line(state)
        if line != self._printed:
            print(line, flush=True)
            self._printed = line


def run(args: argparse.Namespace) -> int:
    console = Console()
    opts = options_from_args(args)
    if args.no_dashboard:
        printer = PlainStatus()
        result = run_pipeline(opts, on_update=printer)
        printer.final()
        print(f"run directory: {result.out}")
        print(json.dumps(result.summary, indent=2))
        if result.reason is not None:
            print(f"{result.status}: {result.reason}", file=sys.stderr)
        return result.exit_code
    with Live(
        dashboard(RunState()),
        console=console,
        refresh_per_second=4,
        transient=False,
        auto_refresh=not args.no_dashboard,
    ) as live:
        result = run_pipeline(opts, on_update=lambda state: live.update(dashboard(state)))
    console.print(f"run directory: {result.out}")
    console.print_json(json.dumps(result.summary))
    if result.reason is not None:
        Console(stderr=True).print(f"[bold red]{result.status}:[/] {result.reason}", markup=True)
    return result.exit_code


__all__ = ["add_arguments", "add_config_argument", "add_run_arguments", "run"]
