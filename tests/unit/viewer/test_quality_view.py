"""The viewer's own live quality (no Qt): NeNA, FRC and drift from the batches it receives."""

from __future__ import annotations

import argparse
import math
import threading
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from live_decode.cli import view
from live_decode.config import QualityConfig
from live_decode.errors import LiveDecodeError
from live_decode.messages import ErrorMsg, EventMsg, Localizations, empty_locs
from live_decode.quality.tracker import QualityTracker
from live_decode.viewer.accumulator import RenderSettings, SuperResAccumulator
from live_decode.viewer.quality_view import LiveQuality, mismatch_banner
from live_decode.viewer.receiver import Receiver
from live_decode.viewer.run_files import frame_stats

from .synthetic import CAMERA_PX_NM, FOV_PX, SyntheticRun, wait_until

FOV_NM = 6400.0
PRECISION_NM = 12.0
CFG = QualityConfig(every_frames=200, drift_window_frames=100, frc_pixel_nm=8.0)
MISMATCH = (
    "frame 812: forward-model residual χ²/px 1.874 left the band [0.912, 1.103] calibrated on "
    "the card; check the camera calibration (gain, offset) and the PSF against the model card"
)


def blinking_locs(
    n_frames: int,
    drift_nm: npt.NDArray[np.float64] | None = None,
    seed: int = 0,
    fov_nm: tuple[float, float] = (FOV_NM, FOV_NM),
) -> Localizations:
    """Fixed fluorophores blinking (on 3 frames on average), each on frame at the true position
    + drift + N(0, PRECISION_NM²) in x and y; frame order."""
    rng = np.random.default_rng(seed)
    n_fl = 800
    pos = rng.uniform(0.05, 0.95, size=(n_fl, 2)) * np.array([fov_nm[1], fov_nm[0]])  # (x, y)
    on = np.zeros(n_fl, bool)
    frames, idx = [], []
    for t in range(n_frames):
        on = np.where(on, rng.random(n_fl) > 1 / 3, rng.random(n_fl) < 0.01)
        i = np.flatnonzero(on)
        frames.append(np.full(i.size, t))
        idx.append(i)
    f, i = np.concatenate(frames), np.concatenate(idx)
    locs = empty_locs(f.size)
    locs["frame"] = f
    xy = pos[i] + rng.normal(0.0, PRECISION_NM, size=(f.size, 2))
    if drift_nm is not None:
        xy += drift_nm[f]
    locs["x_nm"], locs["y_nm"] = xy[:, 0], xy[:, 1]
    locs["prob"], locs["photons"] = 0.9, 3000.0
    locs["sigma_x_nm"] = locs["sigma_y_nm"] = PRECISION_NM
    return locs


def _feed(receiver: Receiver, locs: Localizations, n_frames: int, batch: int = 50) -> None:
    stats = frame_stats(locs, n_frames, FOV_NM**2)
    for start in range(0, n_frames, batch):
        rows = locs[(locs["frame"] >= start) & (locs["frame"] < start + batch)]
        receiver.ingest(rows, stats[start : start + batch])


def test_receiver_quality_from_received_localizations() -> None:
    n = 1000
    drift = np.column_stack([np.linspace(0, 60, n), np.zeros(n)])
    locs = blinking_locs(n, drift)
    receiver = Receiver(None, quality=CFG)
    receiver.start()
    try:
        receiver.set_field_of_view(FOV_NM, FOV_NM)
        _feed(receiver, locs, n)
        q = receiver.quality()
    finally:
        receiver.stop()
    # Every 200 frames, as the supervisor's tracker does.
    assert q.frames.tolist() == [200.0, 400.0, 600.0, 800.0, 1000.0]
    assert math.isfinite(q.latest_nena_nm)
    assert abs(q.latest_nena_nm - PRECISION_NM) < 0.15 * PRECISION_NM
    assert math.isfinite(q.latest_frc_nm) and q.latest_frc_nm > q.latest_nena_nm
    assert q.drift_frames.size == n
    # The drift so far (the last window not closed yet): the true 60 nm/1000 frames slope.
    at_800 = float(q.drift_dx_nm[800])
    assert abs(at_800 - 48.0) < 10.0, at_800
    assert np.all(np.abs(q.drift_dy_nm[:800]) < 10.0)


def _has_updates(receiver: Receiver, n: int) -> bool:
    return bool(receiver.quality().frames.size == n)


def test_quality_of_a_run_on_real_sockets(synthetic_run: SyntheticRun) -> None:
    """Field of view from the preview frame, localizations from the results channel."""
    n, batch = 400, 10
    fov = (FOV_PX[0] * CAMERA_PX_NM, FOV_PX[1] * CAMERA_PX_NM)
    locs = blinking_locs(n, seed=6, fov_nm=fov)
    receiver = Receiver(synthetic_run.endpoints(), quality=CFG)
    receiver.start()
    try:
        synthetic_run.sync(receiver)
        for half in (0, 1):  # wait between the halves: the receiver merges what is queued
            for start in range(half * n // 2, (half + 1) * n // 2, batch):
                rows = locs[(locs["frame"] >= start) & (locs["frame"] < start + batch)]
                synthetic_run.publish(rows, list(range(start, start + batch)), [0.5] * batch)
            wait_until(partial(_has_updates, receiver, half + 1), what="a quality update")
        q = receiver.quality()
    finally:
        receiver.stop()
    assert q.frames.tolist() == [200.0, 400.0]  # every 200 frames (CFG.every_frames)
    assert abs(q.latest_nena_nm - PRECISION_NM) < 0.15 * PRECISION_NM


def test_batches_before_the_field_of_view_are_kept() -> None:
    n = 400
    locs = blinking_locs(n, seed=1)
    live = LiveQuality(CFG)
    assert not live.add(locs[locs["frame"] < 200], 199)  # no field of view yet: kept
    live.set_field_of_view(FOV_NM, FOV_NM)
    assert live.traces().frames.tolist() == [200.0]
    assert live.add(locs[locs["frame"] >= 200], n - 1)
    assert live.traces().frames.tolist() == [200.0, 400.0]


def test_finished_run_quality_is_read_from_its_files(tmp_path: Path) -> None:
    n = 600
    drift = np.column_stack([np.zeros(n), np.linspace(0, -50, n)])
    locs = blinking_locs(n, drift, seed=2)
    tracker = QualityTracker((FOV_NM, FOV_NM), CFG)
    tracker.add(locs)
    tracker.finish()
    tracker.write(tmp_path)
    receiver = Receiver(None, quality=CFG)
    assert receiver.load_quality(tmp_path)
    q = receiver.quality()
    assert q.frames.tolist() == [r.frame for r in tracker.rows]
    np.testing.assert_allclose(q.nena_nm, [r.nena_nm for r in tracker.rows], rtol=1e-6)
    assert q.drift_frames.size == n and abs(float(q.drift_dy_nm[-1]) + 50.0) < 10.0
    assert not Receiver(None).load_quality(tmp_path / "nothing_here")


def test_drift_corrected_render_sharpens_the_image() -> None:
    n = 1000
    drift = np.column_stack([np.linspace(0, 150, n), np.linspace(0, -100, n)])
    locs = blinking_locs(n, drift, seed=3)
    live = LiveQuality(CFG)
    live.set_field_of_view(FOV_NM, FOV_NM)
    live.add(locs, n - 1)
    assert live.drift is not None
    raw = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0), fov_nm=(FOV_NM, FOV_NM))
    corrected = SuperResAccumulator(
        RenderSettings(pixel_size_nm=10.0, drift_corrected=True), fov_nm=(FOV_NM, FOV_NM)
    )
    for acc in (raw, corrected):
        acc.add(locs)
        acc.set_drift(live.drift)
    # Same localizations drawn; corrected, they pile up on fewer pixels (sharper).
    assert raw.image.sum() == corrected.image.sum() == len(locs)
    assert np.count_nonzero(corrected.image) < 0.8 * np.count_nonzero(raw.image)
    before = locs["x_nm"].copy()
    corrected.update(RenderSettings(pixel_size_nm=10.0))  # toggled off: the raw image again
    np.testing.assert_array_equal(corrected.image, raw.image)
    np.testing.assert_array_equal(locs["x_nm"], before)  # coordinates untouched


def test_mismatch_banner_raised_and_cleared() -> None:
    receiver = Receiver(None)
    receiver._absorb(empty_locs(), [], None, [ErrorMsg("model_mismatch", MISMATCH)], 1)
    banner = receiver.mismatch_alarm()
    assert "1.874" in banner and "[0.912, 1.103]" in banner and "812" in banner
    assert receiver.health().last_error.startswith("model_mismatch")
    cleared = EventMsg("worker", "model_mismatch_cleared", "frame 990: back in the band")
    receiver._absorb(empty_locs(), [], None, [cleared], 1)
    assert receiver.mismatch_alarm() == ""
    assert mismatch_banner("unparsed text").endswith("unparsed text")


def test_view_cli_quality_options() -> None:
    parser = argparse.ArgumentParser()
    view.add_arguments(parser)
    args = parser.parse_args(["127.0.0.1", "--quality-every", "250", "--drift-corrected"])
    assert args.drift_corrected and view._quality(args.quality_every).every_frames == 250
    assert view._quality(None) == QualityConfig()
    with pytest.raises(LiveDecodeError, match="at least 10 frames"):
        view._quality(3)


def test_reading_quality_never_waits_for_an_update() -> None:
    """The GUI's read takes the snapshot; an update holding the tracker's lock does not block it."""
    receiver = Receiver(None, quality=CFG)
    receiver.set_field_of_view(FOV_NM, FOV_NM)
    before = receiver.quality()
    got: list[object] = []
    with receiver._quality_lock:  # as during an update (a few 100 ms on a busy machine)
        reader = threading.Thread(target=lambda: got.append(receiver.quality()), daemon=True)
        reader.start()
        reader.join(5.0)
    assert len(got) == 1 and got[0] is before
    _feed(receiver, blinking_locs(200, seed=7), 200)
    after = receiver.quality()
    assert after is not before and after.frames.tolist() == [200.0]
