"""DECODE h5: the real DECODE 0.10 files, the axis/pixel-centre conversion, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from live_decode.errors import LocalizationFileError
from live_decode.io.decode_h5 import read_decode_h5, write_decode_h5
from live_decode.messages import LOC_DTYPE

ROW_NM, COL_NM = 127.0, 117.0  # the real file's px_size, in DECODE's (x = row, y = column) order


def test_reads_real_decode_file(formats_dir: Path) -> None:
    locs = read_decode_h5(formats_dir / "decode_dstorm_data.h5")
    assert locs.dtype == LOC_DTYPE and len(locs) == 96
    first = locs[0]
    # First row of /data: xyz = (-0.14920829, 138.89474, 111.926346) px, px, nm.
    assert first["x_nm"] == pytest.approx((138.89474 + 0.5) * COL_NM)
    assert first["y_nm"] == pytest.approx((-0.14920829 + 0.5) * ROW_NM)
    assert first["z_nm"] == pytest.approx(111.926346)
    # xyz_sig = (0.22134583, 0.35857463, 141.91238)
    assert first["sigma_x_nm"] == pytest.approx(0.35857463 * COL_NM)
    assert first["sigma_y_nm"] == pytest.approx(0.22134583 * ROW_NM)
    assert first["sigma_z_nm"] == pytest.approx(141.91238)
    assert first["frame"] == 294
    assert first["photons"] == pytest.approx(1056.9473)
    assert first["sigma_photons"] == pytest.approx(292.693)
    assert first["bg"] == pytest.approx(191.74039)
    assert first["prob"] == pytest.approx(0.6471875)


def test_reads_real_empty_decode_file(formats_dir: Path) -> None:
    locs = read_decode_h5(formats_dir / "decode_dstorm_data_empty.h5")
    assert locs.dtype == LOC_DTYPE and len(locs) == 0


def test_agrees_with_locan_after_swapping_axes(formats_dir: Path) -> None:
    locan = pytest.importorskip("locan")
    path = formats_dir / "decode_dstorm_data.h5"
    theirs = locan.load_decode_file(path).data  # DECODE's raw px values, no conversion
    ours = read_decode_h5(path)
    np.testing.assert_allclose(ours["y_nm"], (theirs["position_x"] + 0.5) * ROW_NM, atol=1e-3)
    np.testing.assert_allclose(ours["x_nm"], (theirs["position_y"] + 0.5) * COL_NM, atol=1e-3)
    np.testing.assert_array_equal(ours["frame"], theirs["frame"])


def write_decode_like(path: Path, unit: str, xyz: list[list[float]], px: list[float]) -> None:
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data["xyz"] = np.asarray(xyz, dtype=np.float32)
        data["frame_ix"] = np.arange(len(xyz), dtype=np.int64)
        data["phot"] = np.ones(len(xyz), dtype=np.float32)
        data.create_dataset("xyz_sig", data=h5py.Empty("f4"))
        f.create_group("meta").attrs.update({"xy_unit": unit, "px_size": np.asarray(px, "f4")})
        f.create_group("decode").attrs["version"] = "0.10.0"


@pytest.mark.parametrize(
    ("unit", "xyz"), [("px", [[0.0, 2.0, 10.0]]), ("nm", [[0.0, 2.0 * 100.0, 10.0]])]
)
def test_px_and_nm_files_give_the_same_positions(
    tmp_path: Path, unit: str, xyz: list[list[float]]
) -> None:
    # DECODE (x = row 0, y = column 2) at the pixel centre → ours x = 2.5 px, y = 0.5 px.
    path = tmp_path / "e.h5"
    write_decode_like(path, unit, xyz, [50.0, 100.0])
    locs = read_decode_h5(path)
    assert (locs["x_nm"][0], locs["y_nm"][0], locs["z_nm"][0]) == (250.0, 25.0, 10.0)
    assert np.isnan(locs["sigma_x_nm"][0]) and locs["prob"][0] == 1.0  # empty / absent columns


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LocalizationFileError, match="does not exist"):
        read_decode_h5(tmp_path / "nope.h5")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(LocalizationFileError, match="HDF5 error"):
        read_decode_h5(text)
    bare = tmp_path / "bare.h5"
    h5py.File(bare, "w").close()
    with pytest.raises(LocalizationFileError, match="no /data and /meta") as info:
        read_decode_h5(bare)
    assert str(bare) in str(info.value)
    for unit, px in [("furlong", [1.0, 1.0]), ("px", [0.0, 1.0])]:
        odd = tmp_path / f"odd_{unit}.h5"
        write_decode_like(odd, unit, [[0.0, 0.0, 0.0]], px)
        with pytest.raises(LocalizationFileError, match=r"xy_unit|px_size"):
            read_decode_h5(odd)


def _our_locs(n: int = 50, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    locs = np.zeros(n, dtype=LOC_DTYPE)
    locs["frame"] = np.sort(rng.integers(0, 30, n))
    locs["x_nm"] = rng.uniform(0, 6400, n)  # includes the outer half of edge pixels
    locs["y_nm"] = rng.uniform(0, 4800, n)
    locs["z_nm"] = rng.normal(0, 300, n)
    for name in ("photons", "bg", "prob", "sigma_x_nm", "sigma_y_nm", "sigma_z_nm"):
        locs[name] = rng.uniform(0.1, 3000, n)
    locs["sigma_photons"] = rng.uniform(1, 100, n)
    return locs


def test_written_file_round_trips_and_has_decodes_layout(tmp_path: Path) -> None:
    locs = _our_locs()
    path = write_decode_h5(tmp_path / "locs.decode.h5", locs, pixel_size_nm=100.0)
    back = read_decode_h5(path)
    for name in LOC_DTYPE.names or ():
        np.testing.assert_allclose(back[name], locs[name], rtol=1e-6, atol=2e-3, err_msg=name)
    real = {"xyz", "xyz_sig", "xyz_cr", "phot", "phot_sig", "phot_cr", "frame_ix", "id"}
    with h5py.File(path, "r") as f:
        assert real | {"prob", "bg", "bg_sig", "bg_cr"} == set(f["data"])
        assert f["data/xyz"].dtype == np.float32 and f["data/frame_ix"].dtype == np.int64
        assert f["data/xyz_cr"].shape is None  # DECODE's empty placeholder
        assert f["meta"].attrs["xy_unit"] == "px"
        assert f["decode"].attrs["version"] == "0.10.0"


def test_locan_reads_our_decode_file_with_the_same_coordinates(tmp_path: Path) -> None:
    locan = pytest.importorskip("locan")
    locs = _our_locs()
    path = write_decode_h5(tmp_path / "locs.decode.h5", locs, pixel_size_nm=100.0)
    theirs = locan.load_decode_file(path).data  # DECODE px: x = row, centres at integers
    assert len(theirs) == len(locs)
    np.testing.assert_allclose((theirs["position_x"] + 0.5) * 100.0, locs["y_nm"], atol=0.01)
    np.testing.assert_allclose((theirs["position_y"] + 0.5) * 100.0, locs["x_nm"], atol=0.01)
    np.testing.assert_allclose(theirs["position_z"], locs["z_nm"], atol=0.01)
    np.testing.assert_array_equal(theirs["frame"], locs["frame"])  # both 0-based
    np.testing.assert_allclose(theirs["intensity"], locs["photons"], rtol=1e-6)
