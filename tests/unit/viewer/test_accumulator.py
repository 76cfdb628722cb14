"""Super-resolution accumulation: pixels, orientation, filters, Gaussian mass, growth, export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_decode.messages import empty_locs
from live_decode.viewer.accumulator import COARSE_FACTOR, RenderSettings, SuperResAccumulator
from live_decode.viewer.export import export_png, export_tiff
from live_decode.viewer.render import bin_sum, percentile_levels

from .synthetic import make_locs


@pytest.mark.parametrize(
    ("x_nm", "y_nm", "pixel_nm", "row", "col"),
    [
        (0.0, 0.0, 10.0, 0, 0),
        (9.99, 0.0, 10.0, 0, 0),
        (10.0, 0.0, 10.0, 0, 1),  # pixel j covers [j, j+1): 10 nm starts column 1
        (125.0, 37.0, 10.0, 3, 12),  # x is the column, y the row
        (125.0, 37.0, 20.0, 1, 6),
        (4790.0, 3190.0, 10.0, 319, 479),  # last pixel of a 3.2 × 4.8 µm field
    ],
)
def test_histogram_pixel(x_nm: float, y_nm: float, pixel_nm: float, row: int, col: int) -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=pixel_nm), fov_nm=(3200.0, 4800.0))
    assert acc.add(make_locs(0, [(x_nm, y_nm)])) == 1
    image = acc.image
    assert image[row, col] == 1
    assert image.sum() == 1


def test_histogram_counts_and_shape() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=20.0), fov_nm=(3200.0, 4800.0))
    assert acc.shape == (160, 240)  # (rows = height, cols = width)
    acc.add(make_locs(0, [(1010.0, 210.0)] + [(4790.0, 30.0)] * 3))
    acc.add(make_locs(1, [(1010.0, 210.0)]))
    assert acc.image[10, 50] == 2
    assert acc.image[1, 239] == 3
    assert acc.image[50, 10] == 0  # the transpose stays empty
    assert acc.drawn == 5 and acc.kept == 5


def test_outside_and_nan_are_counted_not_drawn() -> None:
    acc = SuperResAccumulator(fov_nm=(1000.0, 1000.0))
    acc.add(make_locs(0, [(-5.0, 10.0), (float("nan"), 10.0), (10.0, 10.0)]))
    assert acc.drawn == 1 and acc.outside == 2


def test_filters_rerender_from_kept_rows() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0), fov_nm=(1000.0, 1000.0))
    acc.add(make_locs(0, [(105.0, 105.0)], prob=0.2, sigma_nm=10.0))
    acc.add(make_locs(0, [(305.0, 305.0)], prob=0.9, sigma_nm=40.0))
    acc.add(make_locs(0, [(505.0, 505.0)], prob=0.9, sigma_nm=10.0))
    assert acc.image.sum() == 3
    acc.set_filters(min_prob=0.5, max_sigma_nm=math.inf)
    assert acc.image[10, 10] == 0 and acc.image.sum() == 2
    acc.set_filters(min_prob=0.5, max_sigma_nm=20.0)
    assert acc.image[50, 50] == 1 and acc.image.sum() == 1
    acc.set_filters(min_prob=0.0, max_sigma_nm=math.inf)  # nothing was lost
    assert acc.image.sum() == 3
    # New localizations are filtered the same way as the re-rendered ones.
    acc.set_filters(min_prob=0.5, max_sigma_nm=math.inf)
    acc.add(make_locs(1, [(705.0, 705.0)], prob=0.1))
    assert acc.image.sum() == 2


def test_pixel_size_change_rerenders() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0), fov_nm=(1000.0, 1000.0))
    acc.add(make_locs(0, [(125.0, 37.0)]))
    acc.update(RenderSettings(pixel_size_nm=20.0))
    assert acc.shape == (50, 50) and acc.image[1, 6] == 1


def test_gaussian_conserves_mass_and_centres_on_the_localization() -> None:
    settings = RenderSettings(pixel_size_nm=10.0, gaussian=True)
    acc = SuperResAccumulator(settings, fov_nm=(1000.0, 1000.0))
    acc.add(make_locs(0, [(503.0, 207.0)], sigma_nm=15.0))
    image = acc.image.astype(np.float64)
    assert image.sum() == pytest.approx(1.0, abs=1e-5)
    rows, cols = np.indices(image.shape)
    # Centroid in pixel units; pixel j's centre is j + 0.5.
    assert (image * (cols + 0.5)).sum() == pytest.approx(50.3, abs=0.02)
    assert (image * (rows + 0.5)).sum() == pytest.approx(20.7, abs=0.02)
    var_x = (image * (cols + 0.5 - 50.3) ** 2).sum()
    assert math.sqrt(var_x) == pytest.approx(1.5, rel=0.1)  # σ 15 nm = 1.5 px (+ pixel width)


def test_gaussian_elliptical_and_tiny_sigma() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0, gaussian=True), fov_nm=(500, 500))
    locs = make_locs(0, [(250.0, 250.0), (55.0, 55.0)])
    locs["sigma_x_nm"] = [30.0, 0.5]
    locs["sigma_y_nm"] = [10.0, 0.5]
    acc.add(locs)
    image = acc.image
    assert image.sum() == pytest.approx(2.0, abs=1e-5)
    assert image[5, 5] == pytest.approx(1.0, abs=1e-4)  # σ ≪ pixel: a histogram count
    row = image[25, 15:35]
    col = image[15:35, 25]
    assert row.max() == col.max() and np.count_nonzero(row > 1e-3) > np.count_nonzero(col > 1e-3)


def test_gaussian_edge_loc_loses_only_its_outside_tail() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0, gaussian=True), fov_nm=(200, 200))
    acc.add(make_locs(0, [(0.5, 100.0)], sigma_nm=20.0))
    assert 0.5 < acc.image.sum() < 0.65  # about half the Gaussian lies left of x = 0


def test_canvas_grows_for_data_beyond_the_field_of_view() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0), fov_nm=(100.0, 100.0))
    acc.add(make_locs(0, [(55.0, 55.0)]))
    acc.add(make_locs(1, [(2005.0, 55.0)]))
    h, w = acc.shape
    assert h == 10 and w > 200
    assert acc.image[5, 5] == 1 and acc.image[5, 200] == 1


def test_canvas_grows_without_fov_and_with_gaussian() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0, gaussian=True))
    acc.add(make_locs(0, [(500.0, 300.0)]))
    first = acc.image.sum()
    acc.add(make_locs(1, [(5000.0, 3000.0)]))
    assert acc.image.sum() == pytest.approx(first + 1.0, abs=1e-4)


def test_reset_and_capacity() -> None:
    acc = SuperResAccumulator(fov_nm=(1000.0, 1000.0), capacity=3)
    acc.add(make_locs(0, [(5.0, 5.0)] * 5))
    assert acc.kept == 3 and acc.not_kept == 2 and acc.image.sum() == 5
    acc.set_filters(min_prob=0.0, max_sigma_nm=math.inf)
    assert acc.image.sum() == 3  # a re-render shows only the kept ones
    acc.reset()
    assert acc.kept == 0 and acc.image.sum() == 0 and acc.shape == (100, 100)


def test_deferred_mode_keeps_now_and_draws_in_slices() -> None:
    acc = SuperResAccumulator(fov_nm=(1000.0, 1000.0), capacity=4, deferred=True)
    assert acc.add(make_locs(0, [(5.0, 5.0)] * 3)) == 0
    assert acc.pending == 3 and acc.image.sum() == 0
    version = acc.version
    assert acc.catch_up(max_rows=2) == 2 and acc.pending == 1 and acc.version > version
    assert acc.add(make_locs(1, [(15.0, 5.0)] * 3)) == 2  # 2 over capacity: drawn at once
    assert acc.catch_up() == 2 and acc.pending == 0
    assert acc.image[0, 0] == 3 and acc.image[0, 1] == 3
    acc.set_filters(min_prob=0.0, max_sigma_nm=20.0)  # clears; re-drawn by catch_up
    assert acc.image.sum() == 0 and acc.pending == 4
    acc.catch_up()
    assert acc.image.sum() == 4  # the kept ones


def test_too_small_pixel_is_refused_with_advice() -> None:
    acc = SuperResAccumulator(fov_nm=(1000.0, 1000.0), max_pixels=10_000)
    with pytest.raises(ValueError, match="choose a larger pixel size"):
        acc.update(RenderSettings(pixel_size_nm=1.0))


def test_view_bins_by_sum_and_clips() -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0), fov_nm=(1000.0, 1500.0))
    acc.add(make_locs(0, [(5.0, 5.0), (15.0, 15.0), (1495.0, 995.0)]))
    v = acc.view(max_side=50)
    assert v.bin_factor == 3 and v.image.shape == (34, 50)
    assert v.image[0, 0] == 2 and v.image.sum() == 3
    assert (v.x0_px, v.y0_px, v.width_px, v.height_px) == (0, 0, 150, 102)
    zoom = acc.view(rows=(-5.0, 4.2), cols=(0.5, 3.0), max_side=100)
    assert zoom.bin_factor == 1 and zoom.image.shape == (5, 3) and zoom.image.sum() == 2


@pytest.mark.parametrize("gaussian", [False, True])
def test_coarse_copy_is_the_block_sum_of_the_render(gaussian: bool) -> None:
    rng = np.random.default_rng(3)
    settings = RenderSettings(pixel_size_nm=10.0, gaussian=gaussian)
    acc = SuperResAccumulator(settings, fov_nm=(1234.0, 987.0))  # ragged: 124 × 99 pixels
    n = 500
    locs = make_locs(0, list(zip(rng.uniform(0, 987, n), rng.uniform(0, 1234, n), strict=True)))
    locs["sigma_x_nm"] = rng.uniform(1, 40, n)
    locs["sigma_y_nm"] = rng.uniform(1, 40, n)
    acc.add(locs[:250])
    acc.add(make_locs(1, [(3000.0, 200.0)]))  # grows the canvas: the coarse copy is rebuilt
    acc.add(locs[250:])
    np.testing.assert_allclose(acc.coarse, bin_sum(acc.image, COARSE_FACTOR), atol=1e-4)
    zoomed_out = acc.view(max_side=20)
    assert zoomed_out.bin_factor % COARSE_FACTOR == 0
    np.testing.assert_allclose(
        zoomed_out.image, bin_sum(acc.image, zoomed_out.bin_factor), atol=1e-3
    )


def test_bin_sum_ragged_edges() -> None:
    image = np.arange(35, dtype=np.float32).reshape(5, 7)
    binned = bin_sum(image, 3)
    assert binned.shape == (2, 3)
    assert binned.sum() == image.sum()
    assert binned[1, 2] == image[3:, 6:].sum()


def test_percentile_levels_ignore_empty_pixels() -> None:
    image = np.zeros((100, 100), np.float32)
    assert percentile_levels(image) == (0.0, 1.0)
    image[0, :10] = np.arange(1, 11)
    assert percentile_levels(image, 50.0) == (0.0, 5.5)


def test_export_png_and_tiff_round_trip(tmp_path: Path) -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=20.0), fov_nm=(400.0, 600.0))
    acc.add(make_locs(0, [(30.0, 10.0)] * 7 + [(590.0, 390.0)]))
    png = export_png(acc.image, tmp_path / "render.png", percentile_levels(acc.image))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tif = export_tiff(acc.image, tmp_path / "render.tif", acc.settings)
    with tifffile.TiffFile(tif) as f:
        data = f.asarray()
        info = json.loads(f.imagej_metadata["Info"])["live_decode"]
        x_res = f.pages[0].tags["XResolution"].value
    assert data.dtype == np.uint16 and data.shape == (20, 30)
    assert data[0, 1] == 7 and data[19, 29] == 1  # histogram counts written as they are
    assert info["counts_per_unit"] == 1.0 and info["pixel_size_nm"] == 20.0
    assert x_res[0] / x_res[1] == pytest.approx(50.0)  # pixels per µm


def test_export_tiff_scales_gaussian(tmp_path: Path) -> None:
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0, gaussian=True), fov_nm=(200, 200))
    acc.add(make_locs(0, [(100.0, 100.0)] * 3))
    tif = export_tiff(acc.image, tmp_path / "g.tif", acc.settings)
    with tifffile.TiffFile(tif) as f:
        data = f.asarray()
        info = json.loads(f.imagej_metadata["Info"])["live_decode"]
    assert data.max() == 65535
    assert data.sum() * info["counts_per_unit"] == pytest.approx(3.0, rel=1e-3)


def test_empty_batch_is_a_no_op() -> None:
    acc = SuperResAccumulator(fov_nm=(100.0, 100.0))
    version = acc.version
    assert acc.add(empty_locs()) == 0 and acc.version == version


def test_rows_without_sigma_are_drawn_under_a_sigma_filter_and_as_gaussians() -> None:
    """A network that predicts no σ (Deep-STORM: NaN) is neither filtered out nor a NaN blob."""
    locs = make_locs(0, [(105.0, 105.0), (505.0, 505.0)], sigma_nm=10.0)
    locs["sigma_x_nm"] = locs["sigma_y_nm"] = np.nan
    acc = SuperResAccumulator(RenderSettings(pixel_size_nm=10.0), fov_nm=(1000.0, 1000.0))
    acc.set_filters(min_prob=0.0, max_sigma_nm=20.0)
    acc.add(locs)
    assert acc.image.sum() == 2
    gauss = SuperResAccumulator(
        RenderSettings(pixel_size_nm=10.0, gaussian=True), fov_nm=(1000.0, 1000.0)
    )
    gauss.add(locs)
    image = gauss.image.astype(np.float64)
    assert np.isfinite(image).all() and image.sum() == pytest.approx(2.0, abs=1e-4)
    assert image[10, 10] > 0.1  # σ of one render pixel: most of the mass near its pixel
