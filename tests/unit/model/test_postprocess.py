from __future__ import annotations

import numpy as np
import pytest
import torch

from live_decode.config import PostprocessConfig
from live_decode.model.postprocess import integrate_probability, localize
from live_decode.model.scaling import Scaling

SCALING = Scaling(input_offset=0, input_scale=1, photons_max=1000, bg_max=100, z_max_nm=0)
CFG = PostprocessConfig(raw_threshold=0.3, split_threshold=0.6)


def _out(h: int, w: int) -> torch.Tensor:
    out = torch.zeros(1, 10, h, w)
    out[:, 1] = 0.5
    out[:, 5:9] = 0.1
    out[:, 9] = 0.2
    return out


def test_integrates_plus_neighbourhood_of_a_local_maximum() -> None:
    p = torch.zeros(1, 5, 5)
    p[0, 2, 2] = 0.5
    p[0, 2, 3] = 0.2
    p[0, 1, 2] = 0.1
    p[0, 1, 1] = 0.4  # diagonal: not integrated, and not a maximum (0.5 is in its 3×3)
    out = integrate_probability(p, 0.3, 0.6)
    assert out[0, 2, 2] == pytest.approx(0.8)
    assert int((out > 0).sum()) == 1


def test_second_emitter_in_neighbouring_pixel_is_kept() -> None:
    p = torch.zeros(1, 5, 5)
    p[0, 2, 2] = 0.9
    p[0, 2, 3] = 0.7  # above split threshold, not a local maximum
    out = integrate_probability(p, 0.3, 0.6)
    assert out[0, 2, 2] == pytest.approx(1.0)  # 1.6 clamped
    assert out[0, 2, 3] == pytest.approx(1.0)


def test_isolated_pixel_below_threshold_is_not_detected() -> None:
    out = _out(6, 6)
    out[0, 0, 3, 3] = 0.2
    assert len(localize(out, [0], CFG, SCALING, 100.0)) == 0


@pytest.mark.parametrize(("row", "col"), [(0, 0), (0, 7), (5, 0), (5, 7), (2, 3)])
def test_coordinates_x_is_column_including_borders(row: int, col: int) -> None:
    out = _out(6, 8)
    out[0, 0, row, col] = 0.9
    out[0, 2, row, col] = 0.25  # dx
    out[0, 3, row, col] = -0.4  # dy
    out[0, 1, row, col] = 0.7
    locs = localize(out, [17], CFG, SCALING, 100.0)
    assert len(locs) == 1
    loc = locs[0]
    assert loc["frame"] == 17
    assert loc["x_nm"] == pytest.approx((col + 0.5 + 0.25) * 100)
    assert loc["y_nm"] == pytest.approx((row + 0.5 - 0.4) * 100)
    assert loc["photons"] == pytest.approx(700)
    assert loc["bg"] == pytest.approx(20)
    assert loc["sigma_x_nm"] == pytest.approx(10)
    assert loc["prob"] == pytest.approx(0.9)
    assert loc["z_nm"] == 0


def test_batch_index_maps_to_frame_numbers() -> None:
    out = _out(6, 6).repeat(3, 1, 1, 1)
    out[1, 0, 2, 2] = 0.9
    out[2, 0, 4, 4] = 0.9
    locs = localize(out, np.array([10, 11, 12]), CFG, SCALING, 100.0)
    assert sorted(locs["frame"].tolist()) == [11, 12]
