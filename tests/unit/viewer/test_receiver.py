"""The receiver thread on loopback sockets: pixels, traces, overlay, health, CURVE, shutdown."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from live_decode.endpoints import RunEndpoints
from live_decode.errors import ConfigError, LiveDecodeError
from live_decode.messages import EosMsg, ErrorMsg, EventMsg, ImageMsg
from live_decode.transport.curve import client_keys, generate_key_set, server_keys
from live_decode.viewer.accumulator import RenderSettings
from live_decode.viewer.receiver import Receiver

from .synthetic import CAMERA_PX_NM, FOV_PX, WORKER, Ctx, SyntheticRun, make_locs, wait_until


def _receiver(run: SyntheticRun, **kwargs: object) -> Receiver:
    receiver = Receiver(run.endpoints(), settings=RenderSettings(pixel_size_nm=20.0), **kwargs)  # type: ignore[arg-type]
    receiver.start()
    run.sync(receiver)
    return receiver


def test_histogram_has_the_right_counts_in_the_right_pixels(synthetic_run: SyntheticRun) -> None:
    receiver = _receiver(synthetic_run)
    try:
        synthetic_run.publish(make_locs(1, [(1010.0, 210.0)] + [(4790.0, 30.0)] * 3), [1], [0.5])
        synthetic_run.publish(make_locs(2, [(1010.0, 210.0), (2000.0, 2000.0)]), [2], [0.4])
        wait_until(lambda: receiver.health().locs_received == 6, what="6 localizations")
        wait_until(lambda: receiver.health().draw_backlog == 0, what="drawing")
        image, settings = receiver.full_image()
        h, w = FOV_PX
        assert image.shape == (h * CAMERA_PX_NM / 20, w * CAMERA_PX_NM / 20)  # (160, 240)
        assert image[10, 50] == 2  # x = 1010 nm -> column 50, y = 210 nm -> row 10
        assert image[1, 239] == 3
        assert image[100, 100] == 1
        assert image[50, 10] == 0
        assert image.sum() == 6 and settings.pixel_size_nm == 20.0
    finally:
        assert receiver.stop()


def test_filter_change_rerenders_off_the_caller_thread(synthetic_run: SyntheticRun) -> None:
    receiver = _receiver(synthetic_run)
    try:
        synthetic_run.publish(make_locs(1, [(1010.0, 210.0)], prob=0.2), [1], [0.1])
        synthetic_run.publish(make_locs(2, [(2010.0, 210.0)], prob=0.9), [2], [0.1])
        wait_until(lambda: receiver.health().locs_received == 2)
        wait_until(lambda: receiver.health().draw_backlog == 0)
        version = receiver.render_version()
        receiver.update_settings(RenderSettings(pixel_size_nm=20.0, min_prob=0.5))
        assert receiver.settings.min_prob == 0.5  # the pending settings already show
        wait_until(lambda: receiver.render_version() > version, what="re-render")
        wait_until(lambda: receiver.health().draw_backlog == 0, what="drawing")
        image, _ = receiver.full_image()
        assert image[10, 50] == 0 and image[10, 100] == 1
        receiver.reset()
        wait_until(lambda: receiver.full_image()[0].sum() == 0, what="reset")
    finally:
        receiver.stop()


def test_density_trace_overlay_and_health(synthetic_run: SyntheticRun) -> None:
    receiver = _receiver(synthetic_run)
    try:
        densities = [0.25, 0.5, 0.75, 1.0]
        locs = np.concatenate([make_locs(f, [(100.0 * f, 50.0)] * (f + 1)) for f in range(4)])
        synthetic_run.publish(locs, [0, 1, 2, 3], densities)
        synthetic_run.results.publish(ErrorMsg("worker_oom", "out of memory"))
        synthetic_run.results.publish(EventMsg("worker", "model_mismatch_ignored", "PSF"))
        synthetic_run.publish_preview(np.full(FOV_PX, 7, np.uint16), index=3)
        wait_until(lambda: len(receiver.traces().frames) == 4, what="4 frames of stats")
        wait_until(lambda: receiver.health().errors == 1, what="the error")
        wait_until(lambda: receiver.health().events == 1, what="the notice")
        traces = receiver.traces()
        np.testing.assert_array_equal(traces.frames, [0, 1, 2, 3])
        np.testing.assert_allclose(traces.density_per_um2, densities)
        det = receiver.detections(2)
        assert det is not None and det.frame == 2 and len(det.x_nm) == 3
        np.testing.assert_allclose(det.x_nm, 200.0)
        assert receiver.detections(99) is None
        wait_until(lambda: (f := receiver.latest_frame()) is not None and f.index == 3)
        frame = receiver.latest_frame()
        assert frame is not None and frame.pixels.shape == FOV_PX and frame.pixels[0, 0] == 7
        h = receiver.health()
        assert h.worker_fps == WORKER.fps and h.latency_ms == WORKER.latency_ms
        assert h.queue_depth == 2 and h.dropped_source == 7
        assert h.last_error == "worker_oom: out of memory" and h.stream == "live"
        assert h.errors == 1 and h.last_event == "worker model_mismatch_ignored: PSF"
        synthetic_run.results.publish(EosMsg(last_index=3))
        wait_until(lambda: receiver.health().stream == "ended", what="eos")
        receiver.record_laser(4.5)
        assert receiver.traces().laser_mw.tolist() == [4.5]
        assert receiver.traces().laser_frames.tolist() == [3.0]
    finally:
        receiver.stop()


def test_malformed_messages_are_counted(ctx: Ctx, synthetic_run: SyntheticRun) -> None:
    receiver = _receiver(synthetic_run)
    try:
        # A second publisher on the same results endpoint is not possible (bound); send garbage on
        # a raw PUB that the receiver does not know about instead: connect the receiver to it.
        raw = ctx.socket(zmq.PUB)
        raw.setsockopt(zmq.LINGER, 0)
        port = raw.bind_to_random_port("tcp://127.0.0.1")
        bad = Receiver(RunEndpoints(results=f"tcp://127.0.0.1:{port}"))
        bad.start()
        try:
            deadline = time.monotonic() + 5
            while bad.health().rejected == 0:
                assert time.monotonic() < deadline
                raw.send_multipart([b"locs", b"not json"])
                time.sleep(0.01)
            assert bad.health().receiver_errors == 0 and bad.running
        finally:
            bad.stop()
            raw.close()
    finally:
        receiver.stop()


def test_remote_run_with_curve_keys(tmp_path: Path, ctx: Ctx) -> None:
    keys = generate_key_set(tmp_path / "keys")
    run = SyntheticRun(ctx, curve=server_keys(keys))
    try:
        receiver = Receiver(run.endpoints(), curve=client_keys(keys))
        receiver.start()
        try:
            run.sync(receiver)
            run.publish(make_locs(5, [(10.0, 10.0)]), [5], [0.1])
            wait_until(lambda: receiver.health().locs_received == 1, what="encrypted locs")
        finally:
            receiver.stop()
    finally:
        run.close()


def test_joins_a_run_already_going(synthetic_run: SyntheticRun) -> None:
    for f in range(100):  # published before anyone listens: lost, as PUB/SUB does
        synthetic_run.publish(make_locs(f, [(10.0, 10.0)]), [f], [0.1])
    receiver = _receiver(synthetic_run)
    try:
        synthetic_run.publish(make_locs(100, [(10.0, 10.0)]), [100], [0.1])
        wait_until(lambda: receiver.latest_result_frame() == 100)
        assert receiver.traces().frames.tolist() == [100.0]
        assert receiver.health().missed_transport == 0
    finally:
        receiver.stop()


def test_stop_joins_the_thread_and_terminates_the_context(synthetic_run: SyntheticRun) -> None:
    receiver = _receiver(synthetic_run)
    synthetic_run.publish(make_locs(1, [(10.0, 10.0)]), [1], [0.1])
    started = time.monotonic()
    assert receiver.stop()
    assert time.monotonic() - started < 1.0
    assert not receiver.running and receiver.context is not None and receiver.context.closed
    assert receiver.stop()  # idempotent
    synthetic_run.publish(make_locs(2, [(10.0, 10.0)]), [2], [0.1])  # the publisher goes on


def test_bad_endpoint_fails_fast() -> None:
    with pytest.raises(ConfigError, match="invalid endpoint"):
        Receiver(RunEndpoints(results="tcp://127.0.0.1"))
    receiver = Receiver(RunEndpoints(results="tcp://127.0.0.1:5557"), curve=None)
    receiver.stop()  # never started: stopping is harmless


def test_startup_error_is_raised_by_start(tmp_path: Path) -> None:
    keys = generate_key_set(tmp_path / "keys")
    # Connecting with server keys is a role mix-up the socket layer refuses.
    receiver = Receiver(RunEndpoints(results="tcp://127.0.0.1:5557"), curve=server_keys(keys))  # type: ignore[arg-type]
    with pytest.raises(LiveDecodeError, match="client keys"):
        receiver.start()
    assert not receiver.running and receiver.context is not None and receiver.context.closed


def test_on_host_endpoints() -> None:
    e = RunEndpoints.on_host("tcp://10.0.0.2", results_port=6000, preview_port=None)
    assert e == RunEndpoints(results="tcp://10.0.0.2:6000", control="tcp://10.0.0.2:5558")
    assert RunEndpoints.on_host("[::1]").results == "tcp://[::1]:5557"
    assert e.as_args() == [
        "--results-endpoint",
        "tcp://10.0.0.2:6000",
        "--control-endpoint",
        "tcp://10.0.0.2:5558",
    ]
    assert math.isnan(Receiver(e).health().worker_fps)


def test_a_lagging_worker_still_finds_a_kept_frame_with_its_detections(
    synthetic_run: SyntheticRun,
) -> None:
    """200 previews before any result, 8 kept: they spread over the lag, none only at its end."""
    receiver = _receiver(synthetic_run, preview_frames=8)
    try:
        for index in range(1, 201):
            synthetic_run.publish_preview(np.full(FOV_PX, index, np.uint16), index)
            wait_until(lambda i=index: receiver.latest_frame().index == i)  # type: ignore[union-attr, misc]
        view = receiver.frame_to_show()
        assert view is not None and view.frame.index == 200 and not view.localized
        locs = np.concatenate([make_locs(f, [(10.0 * f, 500.0)]) for f in range(1, 151)])
        synthetic_run.publish(locs, list(range(1, 151)), [0.1] * 150)
        wait_until(lambda: receiver.latest_result_frame() == 150)
        view = receiver.frame_to_show()
        assert view is not None and view.localized
        assert 150 - 60 < view.frame.index <= 150  # 8 frames over 200: about every 28th
        assert int(view.frame.pixels[0, 0]) == view.frame.index  # that frame's own pixels
        assert view.detections is not None and view.detections.frame == view.frame.index
        assert view.detections.x_nm.tolist() == [10.0 * view.frame.index]
    finally:
        receiver.stop()


def _image(
    frames: int, value: float, shape: tuple[int, int] = (128, 192), run_id: int = 1
) -> ImageMsg:
    pixels = np.full(shape, value, np.float32)
    pixels[3, 5] = 10 * value  # a marked pixel catches a transposed or shifted image
    return ImageMsg(pixels, 25.0, frames=frames, last_frame=frames - 1, run_id=run_id)


def test_network_image_is_the_newest_sum_and_reset_starts_it_afresh(
    synthetic_run: SyntheticRun,
) -> None:
    receiver = _receiver(synthetic_run)
    try:
        assert receiver.network_image() is None  # a DECODE run publishes none
        for frames in (10, 20, 30):  # each message carries the whole sum so far
            synthetic_run.results.publish(_image(frames, frames / 10))
        wait_until(
            lambda: (im := receiver.network_image()) is not None and im.frames == 30,
            what="the third image",
        )
        image = receiver.network_image()
        assert image is not None and image.pixel_size_nm == 25.0 and image.last_frame == 29
        assert image.pixels.shape == (128, 192) and image.pixels[3, 5] == 30.0
        assert image.pixels[0, 0] == 3.0
        assert receiver.network_image() is image  # unchanged: the same snapshot
        receiver.reset()
        shown = receiver.network_image()
        assert shown is not None and shown.frames == 0 and float(np.abs(shown.pixels).max()) == 0
        assert shown.version > image.version
        synthetic_run.results.publish(_image(40, 4.0))
        wait_until(lambda: receiver.network_image().frames == 10, what="the image after reset")  # type: ignore[union-attr]
        after = receiver.network_image()
        assert after is not None and after.pixels[0, 0] == pytest.approx(1.0)  # 4 − 3
        assert after.pixels[3, 5] == pytest.approx(10.0)
        # A worker that starts over (fewer frames than at the reset) is a new run: shown whole.
        synthetic_run.results.publish(_image(5, 0.5))
        wait_until(lambda: receiver.network_image().frames == 5, what="the new run's image")  # type: ignore[union-attr]
        assert receiver.network_image().pixels[0, 0] == 0.5  # type: ignore[union-attr]
        # Reset early in one run, then a next run already further along at its first image:
        # its run_id tells it apart, so nothing of the old run is subtracted from it.
        receiver.reset()
        synthetic_run.results.publish(_image(12, 0.25, run_id=2))
        wait_until(lambda: receiver.network_image().frames == 12, what="the next run's image")  # type: ignore[union-attr]
        shown = receiver.network_image()
        assert shown is not None and float(shown.pixels.min()) == 0.25
    finally:
        receiver.stop()
