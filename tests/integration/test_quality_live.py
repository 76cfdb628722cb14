"""Live quality in a real run: quality files and summary fields, and auto-stop on the FRC.

The bundled model on CPU, 32×32 px frames; the FRC is computed every 40 frames and the target is
one any finite resolution meets, so the run must end itself at the first FRC, long before
``--frames``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "live_decode" / "bundled" / "demo.yaml"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_stop_when_frc_ends_the_run_and_quality_is_reported(tmp_path: Path) -> None:
    data = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    data["microscope"]["fov_px"] = [32, 32]
    data["quality"] = {"every_frames": 40}
    data["control"] = {**data.get("control", {}), "stop_when": {"frc_nm": 10_000}}
    config = tmp_path / "stop.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "live_decode", "run", str(config), "--frames", "5000"]
    cmd += ["--headless", "--no-dashboard", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    reason = summary["stopped_because"]
    assert isinstance(reason, str) and reason.startswith("frc_nm"), summary
    assert summary["frames_in"] < 5000  # it stopped itself
    assert math.isfinite(summary["frc_nm"]) and math.isfinite(summary["nena_nm"])
    assert summary["quality_at_frame"] >= 40
    with (out / "quality.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert any(math.isfinite(float(r["frc_nm"])) for r in rows), rows
    assert (out / "drift.csv").is_file() and (out / "quality.png").is_file()
    mismatch = summary["model_mismatch"]
    assert mismatch is not None and mismatch["enabled"] is True
