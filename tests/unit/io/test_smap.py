"""SMAP _sml.mat: our v7.3 file read back by locan and by us; SMAP's v7 files read too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
import pytest

from live_decode.errors import LocalizationFileError
from live_decode.io.formats import EXTRA_FORMATS, read_locs, write_extra_formats
from live_decode.io.smap import read_smap_sml, write_smap_sml
from live_decode.messages import LOC_DTYPE

PX_NM = 108.0


def random_locs(n: int, seed: int = 0, *, three_d: bool = True) -> npt.NDArray[np.void]:
    rng = np.random.default_rng(seed)
    locs = np.zeros(n, dtype=LOC_DTYPE)
    locs["frame"] = np.sort(rng.integers(0, 40, n))
    locs["x_nm"] = rng.uniform(0, 32 * PX_NM, n)
    locs["y_nm"] = rng.uniform(0, 24 * PX_NM, n)
    locs["z_nm"] = rng.normal(0, 300, n) if three_d else 0.0
    for name in ("photons", "bg", "prob", "sigma_x_nm", "sigma_y_nm", "sigma_photons"):
        locs[name] = rng.uniform(0.1, 3000, n)
    locs["sigma_z_nm"] = rng.uniform(10, 60, n) if three_d else np.nan
    return locs


def write(path: Path, locs: npt.NDArray[np.void], **kwargs: Any) -> Path:
    return write_smap_sml(path, locs, pixel_size_nm=PX_NM, width_px=32, height_px=24, **kwargs)


def test_locan_reads_our_file_with_the_same_coordinates_and_frames(tmp_path: Path) -> None:
    locan = pytest.importorskip("locan")
    locs = random_locs(60)
    path = write(tmp_path / "locs_sml.mat", locs)
    locdata = locan.load_SMAP_file(path)
    data = locdata.data
    assert len(data) == 60 and locdata.dimension == 3
    np.testing.assert_allclose(data["position_x"], locs["x_nm"], atol=0.01)
    np.testing.assert_allclose(data["position_y"], locs["y_nm"], atol=0.01)
    np.testing.assert_allclose(data["position_z"], locs["z_nm"], atol=0.01)
    np.testing.assert_array_equal(data["frame"], locs["frame"] + 1)  # MATLAB: 1-based
    np.testing.assert_allclose(data["intensity"], locs["photons"], rtol=1e-6)
    np.testing.assert_allclose(data["uncertainty_x"], locs["sigma_x_nm"], rtol=1e-6)


def test_2d_file_has_no_z_and_locan_sees_2d(tmp_path: Path) -> None:
    locan = pytest.importorskip("locan")
    locs = random_locs(20, three_d=False)
    path = write(tmp_path / "locs_sml.mat", locs)
    with h5py.File(path, "r") as f:
        assert not {"znm", "znmerr", "locprecznm"} & set(f["saveloc/loc"])
    assert locan.load_SMAP_file(path).dimension == 2
    back = read_smap_sml(path)
    assert np.all(back["z_nm"] == 0) and np.all(np.isnan(back["sigma_z_nm"]))


def test_round_trip_and_matlab_v73_layout(tmp_path: Path) -> None:
    locs = random_locs(30)
    path = write(tmp_path / "locs_sml.mat", locs, camera={"conversion": 4.5, "emgain": 100})
    back = read_locs(path)
    for name in LOC_DTYPE.names or ():
        np.testing.assert_allclose(back[name], locs[name], rtol=1e-6, err_msg=name)
    header = path.read_bytes()[:128]
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
    with h5py.File(path, "r") as f:
        assert f["saveloc"].attrs["MATLAB_class"] == b"struct"
        assert f["saveloc/loc/xnm"].shape == (1, 30)  # MATLAB N×1, column-major
        assert f["saveloc/loc/xnm"].attrs["MATLAB_class"] == b"double"
        info = f["saveloc/file/info"]
        np.testing.assert_allclose(info["cam_pixelsize_um"][()].ravel(), [0.108, 0.108])
        np.testing.assert_allclose(info["roi"][()].ravel(), [0, 0, 32, 24])
        assert info["emgain"][()].item() == 100
        assert info["numberOfFrames"][()].item() == locs["frame"].max() + 1
        name = f["fileformat/name"]
        assert name.attrs["MATLAB_class"] == b"char"
        assert bytes(name[()].ravel().astype(np.uint8)) == b"sml"


def test_reads_a_matlab_v7_file_as_smap_saves_by_default(tmp_path: Path) -> None:
    savemat = pytest.importorskip("scipy.io").savemat
    path = tmp_path / "v7_sml.mat"
    loc = {"frame": np.array([[1.0], [3.0]]), "xnm": np.array([[10.0], [20.0]])}
    loc["ynm"], loc["locprecnm"] = np.array([[5.0], [6.0]]), np.array([[7.0], [8.0]])
    savemat(path, {"saveloc": {"loc": loc}, "fileformat": {"name": "sml"}})
    locs = read_smap_sml(path)
    assert locs["frame"].tolist() == [0, 2] and locs["x_nm"].tolist() == [10.0, 20.0]
    assert locs["sigma_x_nm"].tolist() == [7.0, 8.0] and locs["prob"].tolist() == [1.0, 1.0]


def test_extra_formats_of_a_run_directory(tmp_path: Path) -> None:
    locs = random_locs(10)
    written = write_extra_formats(
        locs,
        tmp_path,
        ["decode_h5", "smap"],
        pixel_size_nm=PX_NM,
        width_px=32,
        height_px=24,
        with_z=True,
    )
    assert [p.name for p in written] == list(EXTRA_FORMATS.values())
    for path in written:
        np.testing.assert_allclose(read_locs(path)["x_nm"], locs["x_nm"], atol=0.01)
    with pytest.raises(ValueError, match="Unknown localization format 'smlm'"):
        write_extra_formats(
            locs, tmp_path, ["smlm"], pixel_size_nm=PX_NM, width_px=32, height_px=24, with_z=True
        )


def test_bad_files_are_clean_errors(tmp_path: Path) -> None:
    with pytest.raises(LocalizationFileError, match="does not exist"):
        read_smap_sml(tmp_path / "nope_sml.mat")
    text = tmp_path / "text_sml.mat"
    text.write_text("not a mat file")
    with pytest.raises(LocalizationFileError, match="not a MATLAB file"):
        read_smap_sml(text)
    other = tmp_path / "other.mat"
    with h5py.File(other, "w") as f:
        f.create_group("something")
    with pytest.raises(LocalizationFileError, match=r"no saveloc\.loc"):
        read_smap_sml(other)
    with pytest.raises(LocalizationFileError, match="from its suffix"):
        read_locs(tmp_path / "locs.txt")
