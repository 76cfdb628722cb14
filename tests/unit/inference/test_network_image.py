"""The worker's network image (Deep-STORM): sums, saves, publishes, resumes, bins for the wire."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import pytest

from live_decode.inference.network_image import NetworkImageKeeper, bin_for_wire
from live_decode.io.sr_image import SR_IMAGE_NAME, read_sr_image, write_sr_image
from live_decode.messages import ImageMsg, Message, decode, encode
from live_decode.transport.results import ResultPublisher


class Recorder:
    """Stands in for the results publisher: keeps what would have gone on the wire."""

    def __init__(self) -> None:
        self.sent: list[ImageMsg] = []

    def publish(self, msg: Message) -> None:
        out = decode(encode(msg))  # exactly what a subscriber would get
        assert isinstance(out, ImageMsg)
        self.sent.append(out)


def _keeper(tmp_path: Path, **kwargs: object) -> tuple[NetworkImageKeeper, Recorder]:
    keeper = NetworkImageKeeper(tmp_path, 25.0, run_id=42, **kwargs)  # type: ignore[arg-type]
    return keeper, Recorder()


def _tiles(value: float, shape: tuple[int, int] = (8, 12)) -> np.ndarray:
    tiles = np.full(shape, value, np.float32)
    tiles[1, 2] = 3 * value
    return tiles


def test_batches_sum_and_the_whole_sum_is_published_when_due(tmp_path: Path) -> None:
    keeper, wire = _keeper(tmp_path, publish_every_s=3600.0)
    pub = cast(ResultPublisher, wire)
    assert not keeper.publish(pub, force=True)  # nothing yet
    keeper.add(_tiles(1.0), frames=4, last_frame=3)
    assert keeper.publish(pub)  # the first one goes at once
    keeper.add(_tiles(2.0), frames=4, last_frame=7)
    assert not keeper.publish(pub)  # not due for an hour
    assert keeper.publish(pub, force=True)  # the end of the stream: now
    assert not keeper.publish(pub, force=True)  # unchanged: not sent again
    first, last = wire.sent
    assert (first.frames, first.last_frame, last.frames, last.last_frame) == (4, 3, 8, 7)
    assert last.run_id == 42 and last.pixel_size_nm == 25.0
    np.testing.assert_array_equal(last.pixels, _tiles(3.0))


def test_the_file_is_saved_when_due_and_a_new_worker_goes_on_from_it(tmp_path: Path) -> None:
    keeper, _ = _keeper(tmp_path, save_every_s=3600.0)
    keeper.add(_tiles(1.0), frames=10, last_frame=9)
    assert keeper.save() is None  # not due
    assert keeper.save(force=True) == tmp_path / SR_IMAGE_NAME
    keeper.add(_tiles(5.0), frames=3, last_frame=12)  # never saved: the worker is killed
    # Its replacement starts from the file and counts the image's own frames.
    after, wire = _keeper(tmp_path, resume=True)
    assert after.frames == 10
    after.add(_tiles(2.0), frames=5, last_frame=17)
    after.publish(cast(ResultPublisher, wire), force=True)
    assert wire.sent[-1].frames == 15
    np.testing.assert_array_equal(wire.sent[-1].pixels, _tiles(3.0))
    after.save(force=True)
    pixels, pixel_nm, frames = read_sr_image(tmp_path / SR_IMAGE_NAME)
    assert frames == 15 and pixel_nm == 25.0
    np.testing.assert_array_equal(pixels, _tiles(3.0))


@pytest.mark.parametrize("frames", [None, 6])
def test_a_file_that_cannot_continue_is_replaced(tmp_path: Path, frames: int | None) -> None:
    path = tmp_path / SR_IMAGE_NAME
    if frames is None:  # no frame count: nothing to continue
        import tifffile

        tifffile.imwrite(path, np.ones((8, 12), np.float32))
    else:  # another shape: another model or camera
        write_sr_image(path, np.ones((4, 4), np.float32), 25.0, frames)
    keeper, _ = _keeper(tmp_path, resume=True)
    keeper.add(_tiles(1.0), frames=2, last_frame=1)
    assert keeper.frames == 2
    np.testing.assert_array_equal(keeper.image(), _tiles(1.0))


def test_a_large_image_is_binned_for_the_wire_keeping_its_sum(tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((301, 200)).astype(np.float32)
    binned, pixel_nm = bin_for_wire(image, 12.5, max_bytes=image.nbytes // 5)
    assert binned.shape == (76, 50) and pixel_nm == 50.0  # 301 → 151 → 76 rows: binned twice
    assert float(binned.sum()) == pytest.approx(float(image.sum()), rel=1e-5)
    assert float(binned[0, 0]) == pytest.approx(float(image[:4, :4].sum()), rel=1e-5)
    same, px = bin_for_wire(image, 12.5)
    assert same.shape == image.shape and px == 12.5  # small enough: as it is
    keeper, wire = _keeper(tmp_path, max_wire_bytes=image.nbytes // 5)
    keeper.add(image, frames=1, last_frame=0)
    keeper.publish(cast(ResultPublisher, wire))
    assert wire.sent[0].pixels.shape == (76, 50) and wire.sent[0].pixel_size_nm == 100.0
    keeper.save(force=True)
    assert read_sr_image(tmp_path / SR_IMAGE_NAME).pixels.shape == (301, 200)  # file: full size
