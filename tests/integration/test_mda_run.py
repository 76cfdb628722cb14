"""``live-decode run`` / ``ld.run`` with ``source.mda``: the source process runs a useq sequence."""

from __future__ import annotations

import json
from pathlib import Path

import live_decode as ld
from live_decode.testing.mm import REPO_CONFIGS


def test_a_useq_time_lapse_runs_in_the_source_process(tiny_model: Path, tmp_path: Path) -> None:
    cfg = ld.load_config(REPO_CONFIGS / "mm_sim.yaml")
    source = cfg.source.model_copy(
        update={"mda": {"time_plan": {"interval": 0, "loops": 60}}, "exposure_ms": 20}
    )
    cfg = cfg.model_copy(update={"source": source})
    out = tmp_path / "run"
    result = ld.run(cfg, out=out, model=tiny_model).wait()
    assert result is not None and result.status == "completed", result and result.reason
    summary = result.summary
    assert summary["frames_in"] == 60  # the sequence's 60 frames, then end of stream
    assert summary["frames_processed"] == summary["frames_sent"] > 0
    assert int(summary["frames_sent"]) + int(summary["frames_dropped"]) == 60
    source_summary = json.loads((out / "source_summary.json").read_text())
    assert source_summary["eos_sent"]
    calibration = json.loads((out / "calibration.json").read_text())
    assert "camera property Offset" in json.dumps(calibration)
    assert (out / "raw.ome.tif").is_file() and (out / "control.csv").is_file()
