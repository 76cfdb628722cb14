"""The worker's mismatch thread: frames and localizations in, an alarm event out, never blocking.

Frames are simulated with twice the card's EM gain while they report the card's calibration; the
"localizations" are the ground truth as the worker's photon conversion would report it (×2).
"""

from __future__ import annotations

import time

import numpy as np

from live_decode.inference.mismatch_watch import MismatchWatch
from live_decode.messages import FrameMsg, empty_locs
from live_decode.model.card import read_card
from live_decode.model.checkpoint import bundled_model_path
from live_decode.simulation.microscope import SimulatedMicroscope
from live_decode.sources.base import camera_from_config


def test_watch_raises_an_event_for_a_wrong_gain() -> None:
    card = read_card(bundled_model_path()).parsed_config
    camera_meta = camera_from_config(card)  # what the frames claim
    cam = card.camera.model_copy(update={"em_gain": 2.0 * card.camera.em_gain})
    mic_cfg = card.microscope.model_copy(update={"fov_px": (40, 40), "seed": 3})
    mic = SimulatedMicroscope(card.model_copy(update={"camera": cam, "microscope": mic_cfg}))
    watch = MismatchWatch(card, max_rate_hz=1e6)
    events = []
    try:
        deadline = time.monotonic() + 60
        while watch.alarm is None and watch.failed is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the band is calibrated first (frames offered meanwhile drop)
        assert watch.failed is None
        for i in range(80):
            f = mic.next_frame()
            locs = empty_locs(len(f.truth))
            locs["frame"] = i
            for c in ("x_nm", "y_nm", "z_nm"):
                locs[c] = f.truth[c]
            locs["photons"] = 2.0 * f.truth["photons"]
            watch.offer_frames([FrameMsg(i, 0, camera_meta, f.adu)])
            watch.offer_locs(locs, last_frame=i)
            events += watch.events()
            time.sleep(0.01)  # the worker's pace, roughly; a full queue would drop, not wait
        deadline = time.monotonic() + 30
        while not events and time.monotonic() < deadline:
            time.sleep(0.1)
            events += watch.events()
    finally:
        watch.close()
    assert events and events[0].raised
    summary = watch.summary()
    assert summary["alarm"] is True and summary["frames_evaluated"] >= 20
    assert np.isfinite(summary["running_chi2_per_px"])
