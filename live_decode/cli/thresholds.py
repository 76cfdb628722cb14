"""``live-decode thresholds MODEL``: choose a trained model's detection thresholds again.

The choice ``train`` makes at the end (:func:`live_decode.pipeline.thresholds.
rechoose_thresholds`), on the saved model, without retraining; the model file and its card are
rewritten (or ``--out`` gets the copy). Prints the search table and the choice.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from live_decode import strict_json
from live_decode.model.device import resolve_device
from live_decode.pipeline.thresholds import rechoose_thresholds


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", type=Path, help="trained model file (.pt) with its model card")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the model with its new card here (default: rewrite MODEL and its card)",
    )
    p.add_argument("--dry-run", action="store_true", help="choose and print; write nothing")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--density",
        type=float,
        default=None,
        metavar="PER_UM2",
        help="emitters/µm² of the validation windows (default: the setup's emitters.density)",
    )
    p.add_argument(
        "--windows",
        type=int,
        default=None,
        help="validation windows simulated (default: the config's training.eval_samples)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="keep this detection threshold instead of searching (DECODE's raw_threshold, "
        "Deep-STORM's model.deepstorm.threshold); the card's metrics are re-measured with it",
    )
    p.add_argument("--split-threshold", type=float, default=None, help="DECODE only: keep this one")
    p.add_argument("--json", action="store_true", help="print the choice as one JSON object")


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    result = rechoose_thresholds(
        args.model,
        out=args.out,
        write=not args.dry_run,
        device=resolve_device(args.device),
        density_per_um2=args.density,
        n_windows=args.windows,
        threshold=args.threshold,
        split_threshold=args.split_threshold,
    )
    if args.json:
        print(
            strict_json.dumps(
                {
                    **result.choice.brief(),
                    "model": None if result.path is None else str(result.path),
                    "metrics_before": result.before.metrics,
                    "metrics": result.card.metrics,
                }
            )
        )
        return 0
    _print_table(result.choice.to_dict()["table"], result.choice.criterion)
    print(result.choice.summary())
    for label, metrics in (("before", result.before.metrics), ("now", result.card.metrics)):
        print(f"held-out {label}: " + ", ".join(_fmt(k, metrics) for k in _HELD_OUT))
    print(f"written: {result.path}" if result.path else "not written (--dry-run)")
    return 0


_HELD_OUT = ("jaccard", "rmse_lat_nm", "efficiency_lat", "n_tp", "n_fp", "n_fn")


def _fmt(key: str, metrics: dict[str, float]) -> str:
    value = metrics.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{key} –"
    return f"{key} {value:.4g}"


def _print_table(rows: list[dict[str, float]], criterion: str) -> None:
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    settings = [k for k in rows[0] if k.endswith("threshold")]
    table = Table(title="thresholds tried (validation windows)")
    for col in (*settings, "jaccard", "rmse_lat_nm", criterion):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            *(f"{row[k]:g}" for k in settings),
            *(_fmt(k, row).split(" ", 1)[1] for k in ("jaccard", "rmse_lat_nm", criterion)),
        )
    Console().print(table)
