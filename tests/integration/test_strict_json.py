"""Every JSON file (and JSON line) that simulate, localize, train and evaluate write is strict JSON.

Strict parsers (jq, JavaScript, ``json.loads(..., parse_constant=...)``) reject ``NaN`` and
``Infinity``; a value that does not exist is ``null``. Counts are JSON integers, not ``12.0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from live_decode.cli.main import main
from live_decode.strict_json import dumps, loads_strict, to_jsonable, write_json

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"
TINY_TRAINING: dict[str, Any] = {
    "model": {"size": "custom", "filters": 8},
    "training": {"crop_px": 16, "batch_size": 4, "eval_samples": 8, "eval_every": 2},
}
COUNT_KEYS = ("frames_received", "frames_processed", "localizations", "n_tp", "n_fp", "n_fn")


def _json_objects(printed: str) -> list[Any]:
    """The JSON documents in a command's stdout (after any progress bar)."""
    start = printed.find("{")
    return [] if start < 0 else [loads_strict(printed[start:])]


def _integer_counts(value: Any) -> None:
    """Every count key, at any depth, holds an int (or null: no value, e.g. an unset limit)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if (key in COUNT_KEYS or key == "n") and item is not None:
                assert isinstance(item, int) and not isinstance(item, bool), (key, item)
            _integer_counts(item)
    elif isinstance(value, list):
        for item in value:
            _integer_counts(item)


def test_every_json_file_of_simulate_localize_train_evaluate_is_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    movie_dir, run_dir, train_dir = tmp_path / "movie", tmp_path / "run", tmp_path / "train"
    argv = ["simulate", str(DEMO), "--frames", "12", "--out", str(movie_dir), "--seed", "5"]
    assert main(argv) == 0
    movie = movie_dir / "movie.ome.tif"
    assert main(["localize", str(movie), "--out", str(run_dir), "--device", "cpu"]) == 0
    printed = _json_objects(capsys.readouterr().out)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY_TRAINING), encoding="utf-8")
    argv = ["train", str(tiny), "--out", str(train_dir), "--name", "tiny", "--steps", "2"]
    assert main([*argv, "--threads", "1", "--device", "cpu"]) == 0  # untrained: NaN metrics
    printed += _json_objects(capsys.readouterr().out)
    gt = movie_dir / "ground_truth.csv"
    evaluate = ["evaluate", str(train_dir / "tiny.pt"), str(movie), str(gt), "--json"]
    assert main([*evaluate, "--device", "cpu"]) == 0
    printed += _json_objects(capsys.readouterr().out)

    files = sorted(tmp_path.rglob("*.json"))
    names = {p.name for p in files}
    assert {"worker_summary.json", "summary.json", "tiny.card.json"} <= names, names
    for path in files:
        data = loads_strict(path.read_text(encoding="utf-8"))  # raises on NaN / Infinity
        _integer_counts(data)
    assert len(printed) == 3
    for data in printed:
        _integer_counts(data)


def test_to_jsonable_nulls_nan_and_unwraps_numpy() -> None:
    value = {
        "nan": float("nan"),
        "inf": np.float32("inf"),
        "count": np.int64(7),
        "flag": np.bool_(True),
        "row": np.array([1.5, np.nan]),
        "pair": (np.uint8(2), None),
        "path": Path("a/b"),
    }
    assert to_jsonable(value) == {
        "nan": None,
        "inf": None,
        "count": 7,
        "flag": True,
        "row": [1.5, None],
        "pair": [2, None],
        "path": "a/b",
    }
    assert dumps({"x": np.float64(0.25)}) == '{"x":0.25}'
    with pytest.raises(TypeError, match="Cannot write a object as JSON"):
        dumps({"x": object()})
    with pytest.raises(ValueError, match="NaN is not a JSON value"):
        loads_strict('{"x": NaN}')


def test_write_json_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text('{"old": 1}\n')
    write_json(path, {"frames": np.int32(3), "latency_ms": float("nan")})
    assert loads_strict(path.read_text()) == {"frames": 3, "latency_ms": None}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert loads_strict(path.read_text()) == {"frames": 3, "latency_ms": None}  # old file kept
