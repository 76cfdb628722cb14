"""The README's Python API example runs, and localizes as ``live-decode localize`` does.

The example's code block is taken from README.md ("## Python API") and run as it stands; its
movie is then written as a TIFF and localized by the command line: both run directories must hold
the same localizations, row for row, in both formats.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section should hold one python code block"
    return blocks[0]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run the example in a fresh directory; its namespace (movie, locs ...) afterwards."""
    where = tmp_path_factory.mktemp("readme")
    namespace: dict[str, Any] = {}
    cwd = os.getcwd()
    os.chdir(where)
    try:
        exec(compile(readme_example(), "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return where, namespace


def test_the_example_localizes_scores_and_saves(example: tuple[Path, dict[str, Any]]) -> None:
    where, ns = example
    locs, truth, metrics = ns["locs"], ns["truth"], ns["metrics"]
    assert len(locs) > 0.5 * len(truth)  # the bundled model finds most emitters of the demo
    assert metrics["jaccard"] > 0.5 and metrics["rmse_lat_nm"] < 60
    assert set(locs["frame"]) <= set(range(ns["movie"].shape[0]))
    for name in ("locs.csv", "locs.hdf5", "locs.yaml"):
        assert (where / "runs" / "api_example" / name).is_file()


def test_the_command_line_gives_the_same_rows(
    example: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    import live_decode as ld

    where, ns = example
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, ns["movie"])  # no metadata: both sides use the demo camera
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "live_decode", "localize", str(movie), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api_dir = where / "runs" / "api_example"
    assert (out / "locs.csv").read_text() == (api_dir / "locs.csv").read_text()
    cli_h5, api_h5 = ld.read_locs(out / "locs.hdf5"), ld.read_locs(api_dir / "locs.hdf5")
    assert len(cli_h5) == len(ns["locs"]) == len(api_h5)
    for column in ld.LOC_COLUMNS:
        np.testing.assert_array_equal(cli_h5[column], api_h5[column], err_msg=column)
