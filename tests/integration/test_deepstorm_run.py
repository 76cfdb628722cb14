"""Deep-STORM live: ``live-decode run configs/deepstorm_demo.yaml`` end to end (real processes).

The bundled Deep-STORM model runs in the same worker as DECODE: localizations in the run's files,
its summed density image in ``sr_image.tif`` and, while it runs, on the results channel, where a
viewer's receiver joined through the run's ``endpoints.json`` accumulates it. The camera is
slowed to 5 frames/s in a copy of the config: whether a CPU keeps up with the camera is a
benchmark's question.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from live_decode.io.run_dir import ENDPOINTS_NAME, read_endpoints
from live_decode.io.sr_image import SR_IMAGE_NAME, read_sr_image
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.model.checkpoint import bundled_model_path
from live_decode.viewer.receiver import Receiver

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
N_FRAMES = 24


@pytest.mark.timeout(600)  # start-up alone took minutes on the shared 2-core machine (load 14)
def test_deepstorm_runs_live_with_its_image(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "configs" / "deepstorm_demo.yaml").read_text())
    data["microscope"].update(exposure_ms=200, frame_interval_ms=200)
    data["inference"]["model"] = str(bundled_model_path("deepstorm_demo"))
    data["control"]["mode"] = "off"
    config = tmp_path / "deepstorm.yaml"
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "live_decode", "run", str(config), "--frames", str(N_FRAMES),
        "--headless", "--no-dashboard", "--no-raw", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, cwd=REPO
    )
    receiver: Receiver | None = None
    try:
        deadline = time.monotonic() + 300
        while not (out / ENDPOINTS_NAME).is_file() and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never wrote its endpoints"
            time.sleep(0.1)
        if proc.poll() is None:  # a viewer joins the run going (what `live-decode view` does)
            receiver = Receiver(read_endpoints(out).endpoints)
            receiver.start()
        output, _ = proc.communicate(timeout=540)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    summary = json.loads((out / "summary.json").read_text())
    worker = json.loads((out / "worker_summary.json").read_text())
    assert summary["status"] == "completed" and worker["mismatches"] == []
    assert summary["frames_processed"] + summary["frames_dropped"] == N_FRAMES
    assert summary["frames_processed"] > 0
    locs = read_thunderstorm_csv(out / "locs.csv")
    assert len(locs) == summary["localizations"] > 0
    assert np.isnan(locs["photons"]).all()  # Deep-STORM predicts positions only
    image, pixel_nm, image_frames = read_sr_image(out / SR_IMAGE_NAME)
    assert image.shape == (64 * 4, 64 * 4) and pixel_nm == 25.0
    assert float(image.sum()) > 0 and float(image.min()) >= 0
    assert image_frames == summary["frames_processed"]
    # The viewer got the image while the run went on: the last one published is the file's.
    assert receiver is not None, "the run ended before a viewer could join it"
    try:
        deadline = time.monotonic() + 10  # the last messages may still be on their way
        n = summary["frames_processed"]
        while (shown := receiver.network_image()) is None or shown.frames < n:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert shown is not None, "no network image reached the viewer's receiver"
        assert shown.pixel_size_nm == 25.0 and shown.frames == summary["frames_processed"]
        np.testing.assert_array_equal(shown.pixels, image)
    finally:
        receiver.stop()
