"""The README's "Inside your own pymmcore-plus acquisition" example runs as it stands.

Its code block is run in a fresh directory that sees the repository's ``configs/``: a real
UniMMCore with the simulated SMLM camera and laser, ``ld.attach``, a 200-frame ``run_mda`` with
pymmcore-plus's OME-TIFF writer. The bundled model runs (at whatever speed this machine gives).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import tifffile

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Inside your own pymmcore-plus acquisition"


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section should hold one python code block"
    return blocks[0]


def test_the_mda_example_localizes_and_writes_the_raw_frames(tmp_path: Path) -> None:
    (tmp_path / "configs").symlink_to(REPO / "configs")
    namespace: dict[str, Any] = {}
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(readme_example(), "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    result = namespace["result"]
    assert result.status == "completed", result.reason
    assert result.summary["frames_in"] == 200 and result.summary["frames_processed"] > 0
    assert result.summary["localizations"] > 0
    assert (tmp_path / "runs" / "mda" / "locs.csv").is_file()
    assert tifffile.imread(tmp_path / "runs" / "mda_raw.ome.tiff").shape[0] == 200
