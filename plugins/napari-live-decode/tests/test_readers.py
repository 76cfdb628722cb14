"""The readers: files written by live_decode's writers (and other tools' files) → Points in nm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_live_decode._layers import DEFAULT_POINT_SIZE_NM, point_sizes_nm
from napari_live_decode._readers import (
    get_decode_reader,
    get_picasso_reader,
    get_thunderstorm_reader,
)

READERS = {
    "csv": get_thunderstorm_reader,
    "hdf5": get_picasso_reader,
    "decode_h5": get_decode_reader,
}
FORMATS_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "formats"


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_a_file_of_ours_reads_back_as_points_in_nm(
    fmt: str, loc_files: dict[str, Path], locs: pd.DataFrame
) -> None:
    reader = READERS[fmt](str(loc_files[fmt]))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(loc_files[fmt]))
    assert kind == "points" and data.shape == (len(locs), 2)
    order = np.lexsort((kwargs["features"]["frame"], data[:, 1], data[:, 0]))
    expected = np.lexsort((locs["frame"], locs["x_nm"], locs["y_nm"]))
    # Points are (row, col) = (y, x) in nm; Picasso stores px (float32): within 1e-3 nm.
    np.testing.assert_allclose(data[order, 0], locs["y_nm"].to_numpy()[expected], atol=1e-3)
    np.testing.assert_allclose(data[order, 1], locs["x_nm"].to_numpy()[expected], atol=1e-3)
    features = kwargs["features"]
    np.testing.assert_array_equal(
        features["frame"].to_numpy()[order], locs["frame"].to_numpy()[expected]
    )
    np.testing.assert_allclose(
        features["photons"].to_numpy()[order], locs["photons"].to_numpy()[expected], rtol=1e-5
    )
    assert kwargs["units"] == ("nm", "nm") and kwargs["metadata"]["units"] == "nm"
    assert kwargs["metadata"]["n_localizations"] == len(locs)


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_each_reader_declines_the_other_formats(fmt: str, loc_files: dict[str, Path]) -> None:
    for other, path in loc_files.items():
        if other != fmt:
            assert READERS[fmt](str(path)) is None, (fmt, path.name)
    assert READERS[fmt]([str(loc_files[fmt])] * 2) is None  # a stack of files: not ours


def test_a_csv_that_is_not_thunderstorm_is_declined(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    assert get_thunderstorm_reader(str(path)) is None


def test_point_size_is_two_sigma_or_the_default() -> None:
    sizes = point_sizes_nm([10.0, np.nan, 1000.0, np.nan], [20.0, 8.0, 1.0, np.nan])
    np.testing.assert_allclose(sizes, [40.0, 16.0, 200.0, DEFAULT_POINT_SIZE_NM])


@pytest.mark.parametrize(
    ("name", "reader"),
    [
        ("Thunderstorm_dstorm_data.csv", get_thunderstorm_reader),  # ThunderSTORM's own export
        ("decode_dstorm_data.h5", get_decode_reader),  # DECODE's EmitterSet.save
    ],
)
def test_other_tools_files_read_as_points(name: str, reader: object) -> None:
    """Files the other tools wrote are recognised (ThunderSTORM quotes its whole header line)
    and become (y, x) nm points, as ``ld.read_locs`` reads them."""
    path = FORMATS_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared/data/formats is not checked out)")
    import live_decode as ld

    read = reader(str(path))  # type: ignore[operator]
    assert read is not None
    [(data, _, _)] = read(str(path))
    expected = ld.read_locs(path)
    assert len(data) == len(expected) > 0
    np.testing.assert_allclose(data[:, 0], expected["y_nm"])
    np.testing.assert_allclose(data[:, 1], expected["x_nm"])


@pytest.mark.qt
def test_napari_opens_our_files_with_this_plugin(
    make_napari_viewer: object, loc_files: dict[str, Path], locs: pd.DataFrame
) -> None:
    viewer = make_napari_viewer()  # type: ignore[operator]
    for fmt in ("hdf5", "csv", "decode_h5"):
        [layer] = viewer.open(str(loc_files[fmt]), plugin="napari-live-decode")
        assert layer._type_string == "points" and len(layer.data) == len(locs)
        assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
        assert set(layer.features.columns) >= {"frame", "photons", "prob", "sigma_x_nm"}
