"""Colour by z or by time: each pixel's mean value as hue, its count as brightness."""

from __future__ import annotations

import numpy as np
import pytest

from live_decode.viewer.accumulator import RenderSettings, SuperResAccumulator
from live_decode.viewer.render import colour_by_value

from .synthetic import make_locs


def _locs_with(frame: int, xy_z: list[tuple[float, float, float]]) -> np.ndarray:
    locs = make_locs(frame, [(x, y) for x, y, _ in xy_z])
    locs["z_nm"] = [z for _, _, z in xy_z]
    return locs


@pytest.mark.parametrize("gaussian", [False, True])
def test_z_colour_is_the_mean_z_of_each_pixel(gaussian: bool) -> None:
    acc = SuperResAccumulator(
        RenderSettings(pixel_size_nm=10.0, colour="z", gaussian=gaussian), fov_nm=(400, 400)
    )
    acc.add(_locs_with(0, [(105.0, 55.0, 100.0), (105.0, 55.0, 300.0), (305.0, 205.0, -50.0)]))
    view = acc.view()
    assert view.values is not None and view.value_range == (-50.0, 300.0)
    assert view.values[5, 10] == pytest.approx(200.0)  # (100 + 300) / 2
    assert view.values[20, 30] == pytest.approx(-50.0)
    assert np.isnan(view.values[0, 0])  # empty: no value
    assert view.image.sum() == pytest.approx(3.0, rel=1e-4)


def test_time_colour_and_binned_views_weight_by_count() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0, colour="time"), fov_nm=(400, 400))
    acc.add(make_locs(2, [(15.0, 15.0)]))
    acc.add(make_locs(10, [(25.0, 15.0)] * 3))
    full = acc.view()
    assert full.values is not None and full.value_range == (2.0, 10.0)
    assert (full.values[1, 1], full.values[1, 2]) == (2.0, 10.0)
    binned = acc.view(max_side=10)  # 40 px → 4× bins: both pixels in one bin
    assert binned.bin_factor == 4 and binned.values is not None
    assert binned.values[0, 0] == pytest.approx((2 + 3 * 10) / 4)


def test_colour_survives_growth_and_settings_changes() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0, colour="z"))
    acc.add(_locs_with(0, [(15.0, 15.0, 40.0)]))
    acc.add(_locs_with(1, [(2015.0, 1015.0, 80.0)]))  # the canvas grows: values move along
    view = acc.view()
    assert view.values is not None
    assert (view.values[1, 1], view.values[101, 201]) == (40.0, 80.0)
    acc.update(RenderSettings(pixel_size_nm=10.0))  # back to density: no values
    assert acc.view().values is None and acc.view().image.sum() == 2
    with pytest.raises(ValueError, match="colour must be one of"):
        RenderSettings(colour="rainbow")  # type: ignore[arg-type]


def test_colour_by_value_maps_hue_and_brightness() -> None:
    lut = np.zeros((256, 3), np.uint8)
    lut[:, 0] = np.arange(256)  # red grows along the table
    lut[:, 2] = 255 - np.arange(256)
    image = np.array([[4.0, 2.0, 0.0]], np.float32)
    values = np.array([[0.0, 100.0, np.nan]], np.float32)
    rgb = colour_by_value(image, values, (0.0, 100.0), white=4.0, lut=lut)
    assert rgb.shape == (1, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [0, 0, 255]  # low value: blue end, full brightness
    assert rgb[0, 1].tolist() == [127, 0, 0]  # high value: red end, half brightness
    assert rgb[0, 2].tolist() == [0, 0, 0]  # empty pixel: black
