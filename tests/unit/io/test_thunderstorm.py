"""ThunderSTORM CSV: round trips, the real ThunderSTORM file, locan, crash safety, errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from live_decode.errors import LocalizationFileError
from live_decode.io.thunderstorm import (
    GROUND_TRUTH_DTYPE,
    LOC_COLUMNS,
    LOC_COLUMNS_2D,
    ThunderstormWriter,
    has_z,
    read_ground_truth_csv,
    read_thunderstorm_csv,
    write_ground_truth_csv,
    write_thunderstorm_csv,
)
from live_decode.messages import LOC_DTYPE


def random_locs(n: int, seed: int = 0) -> npt.NDArray[np.void]:
    rng = np.random.default_rng(seed)
    locs = np.zeros(n, dtype=LOC_DTYPE)
    locs["frame"] = np.sort(rng.integers(0, 50, n))
    for name in LOC_DTYPE.names or ():
        if name != "frame":
            locs[name] = rng.uniform(0.01, 20000, n)
    locs["z_nm"] = rng.normal(0, 300, n)
    return locs


def assert_same_locs(a: npt.NDArray[np.void], b: Any) -> None:
    for name in LOC_DTYPE.names or ():
        np.testing.assert_array_equal(a[name], np.broadcast_to(b[name], a.shape), err_msg=name)


def _as_dict(locs: npt.NDArray[np.void]) -> dict[str, Any]:
    return {name: locs[name] for name in locs.dtype.names or ()}


def test_round_trip_in_batches(tmp_path: Path) -> None:
    locs = random_locs(50)
    locs["sigma_photons"][3] = np.nan  # unknown values survive as NaN
    path = tmp_path / "locs.csv"
    with ThunderstormWriter(path) as writer:
        writer.append(locs[:20])
        writer.append(locs[:0])
        writer.append(locs[20:])
        assert writer.n_written == 50
    assert_same_locs(read_thunderstorm_csv(path), locs)


def test_file_looks_like_thunderstorm(tmp_path: Path) -> None:
    locs = random_locs(2)
    locs["frame"] = [0, 7]
    locs["sigma_x_nm"], locs["sigma_y_nm"] = [3, 10], [4, 10]
    path = tmp_path / "locs.csv"
    with ThunderstormWriter(path) as writer:
        writer.append(locs)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(f'"{c}"' for c in LOC_COLUMNS)
    assert lines[0].startswith('"id","frame","x [nm]","y [nm]","z [nm]","intensity [photon]"')
    rows = [line.split(",") for line in lines[1:]]
    assert [r[:2] for r in rows] == [["1", "1"], ["2", "8"]]  # ids and frames 1-based
    assert float(rows[0][7]) == pytest.approx(np.sqrt((9 + 16) / 2))  # uncertainty_xy


def test_nan_and_inf_are_spelt_for_java(tmp_path: Path) -> None:
    locs = random_locs(1)
    locs["bg"], locs["sigma_photons"] = np.nan, np.inf
    path = tmp_path / "locs.csv"
    with ThunderstormWriter(path) as writer:
        writer.append(locs)
    row = path.read_text().splitlines()[1]
    assert "NaN" in row and "Infinity" in row and "nan" not in row
    back = read_thunderstorm_csv(path)
    assert np.isnan(back["bg"][0]) and np.isposinf(back["sigma_photons"][0])


def test_reads_real_thunderstorm_export(formats_dir: Path) -> None:
    locs = read_thunderstorm_csv(formats_dir / "Thunderstorm_dstorm_data.csv")
    assert len(locs) == 19
    first = locs[0]
    assert first["frame"] == 2000  # 2001.0 in the file, 1-based
    assert first["x_nm"] == pytest.approx(1320.109670647555)
    assert first["y_nm"] == pytest.approx(26344.7124618434)
    assert first["photons"] == pytest.approx(296.55843680038157)
    assert first["bg"] == pytest.approx(31.3024090311172)  # offset [photon]
    assert first["sigma_x_nm"] == first["sigma_y_nm"] == pytest.approx(22.93255128689051)
    assert first["z_nm"] == 0 and first["prob"] == 1 and np.isnan(first["sigma_z_nm"])


def test_our_columns_use_thunderstorm_names(formats_dir: Path) -> None:
    header = (formats_dir / "Thunderstorm_dstorm_data.csv").read_text().splitlines()[0]
    theirs = {name.strip() for name in header.replace('"', "").split(",")}
    shared = {"id", "frame", "x [nm]", "y [nm]", "intensity [photon]", "offset [photon]"}
    assert shared <= theirs and shared <= set(LOC_COLUMNS)


def test_locan_reads_our_file_with_the_same_coordinates(tmp_path: Path) -> None:
    locan = pytest.importorskip("locan")
    locs = random_locs(30)
    path = tmp_path / "locs.csv"
    with ThunderstormWriter(path) as writer:
        writer.append(locs)
    data = locan.load_thunderstorm_file(path).data
    np.testing.assert_allclose(data["position_x"], locs["x_nm"], rtol=1e-6)
    np.testing.assert_allclose(data["position_y"], locs["y_nm"], rtol=1e-6)
    np.testing.assert_allclose(data["position_z"], locs["z_nm"], rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(data["frame"], locs["frame"] + 1)
    np.testing.assert_allclose(data["intensity"], locs["photons"], rtol=1e-6)


def _blinking_2d_locs(
    n_frames: int = 400, seed: int = 3, drift_nm_per_frame: float = 0.0
) -> npt.NDArray[np.void]:
    """2-D model output: 40 fixed emitters seen ~30 % of frames, jitter 15 nm, z = 0."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(500, 4500, (40, 2))
    on = rng.random((n_frames, len(sites))) < 0.3
    frame, site = np.nonzero(on)
    locs = np.zeros(frame.size, dtype=LOC_DTYPE)
    locs["frame"] = frame
    locs["x_nm"] = sites[site, 0] + rng.normal(0, 15, frame.size) + drift_nm_per_frame * frame
    locs["y_nm"] = sites[site, 1] + rng.normal(0, 15, frame.size)
    locs["photons"], locs["bg"], locs["prob"] = 2000, 20, 0.9
    locs["sigma_x_nm"] = locs["sigma_y_nm"] = 15
    locs["sigma_z_nm"] = np.nan  # what a 2-D model reports
    return locs


@pytest.mark.filterwarnings("ignore:The function register_cc has been refactored")
def test_2d_file_has_no_z_columns_and_locan_renders_and_drift_corrects_it(
    tmp_path: Path,
) -> None:
    """locan treats any z column as 3-D; on a 2-D file render_2d, histogram and Drift must run."""
    locan = pytest.importorskip("locan")
    locs = _blinking_2d_locs(drift_nm_per_frame=0.75)  # chunk 2 is 100 nm right of chunk 1
    assert not has_z(locs)
    path = tmp_path / "locs.csv"
    write_thunderstorm_csv(path, locs)
    header = path.read_text().splitlines()[0]
    assert header == ",".join(f'"{c}"' for c in LOC_COLUMNS_2D)
    assert "z [nm]" not in header
    expected = {**_as_dict(locs), "z_nm": 0, "sigma_z_nm": np.nan}  # what a 2-D file implies
    assert_same_locs(read_thunderstorm_csv(path), expected)

    locdata = locan.load_thunderstorm_file(path)
    assert locdata.dimension == 2 and len(locdata) == len(locs)
    np.testing.assert_allclose(locdata.data["position_x"], locs["x_nm"], rtol=1e-6)
    image, _, _ = locan.histogram(locdata, bin_size=100)
    assert image.sum() > 0.95 * len(locs)  # locan bins drop points on the far edge
    locan.render_2d(locdata, bin_size=100)
    # locan's Drift fails with IndexError on a file with a z column of zeros; here it runs.
    drift = locan.Drift(
        n_chunks=3, target="first", method="cc", kwargs_register={"bin_size": 20}
    ).compute(locdata)
    assert len(drift.transformations) == 3
    # The correction that moves chunk 2 onto chunk 1: −100 nm in x (20 nm bins).
    np.testing.assert_allclose(drift.transformations[1].offset, [-100, 0], atol=50)


def test_3d_writer_keeps_z_columns(tmp_path: Path) -> None:
    locs = random_locs(5)
    assert has_z(locs)
    path = tmp_path / "locs.csv"
    write_thunderstorm_csv(path, locs)
    assert path.read_text().splitlines()[0] == ",".join(f'"{c}"' for c in LOC_COLUMNS)
    assert_same_locs(read_thunderstorm_csv(path), locs)


def test_resume_keeps_the_2d_layout_of_the_file(tmp_path: Path) -> None:
    locs = _blinking_2d_locs(20)
    path = tmp_path / "locs.csv"
    with ThunderstormWriter(path, with_z=False) as writer:
        writer.append(locs[:10])
    with ThunderstormWriter(path, resume=True, with_z=True) as writer:
        assert writer.columns == LOC_COLUMNS_2D
        writer.append(locs[10:])
    assert len(read_thunderstorm_csv(path)) == len(locs)


def test_crash_loses_nothing_already_appended(
    tmp_path: Path, crash_after: Callable[[str], None]
) -> None:
    path = tmp_path / "locs.csv"
    crash_after(
        f"""
        import numpy as np
        from live_decode.io.thunderstorm import ThunderstormWriter
        from live_decode.messages import LOC_DTYPE
        writer = ThunderstormWriter({str(path)!r})
        for frame in range(3):
            locs = np.zeros(4, dtype=LOC_DTYPE)
            locs["frame"] = frame
            writer.append(locs)
        """
    )
    assert read_thunderstorm_csv(path)["frame"].tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_partial_last_line_is_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "locs.csv"
    with ThunderstormWriter(path) as writer:
        writer.append(random_locs(3))
    with path.open("a") as f:
        f.write("4,9,12.5")  # a writer killed mid-line
    with caplog.at_level(logging.WARNING, logger="live_decode.io.thunderstorm"):
        assert len(read_thunderstorm_csv(path)) == 3
    assert "incomplete last line" in caplog.text


def test_empty_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "locs.csv"
    ThunderstormWriter(path).close()
    assert read_thunderstorm_csv(path).dtype == LOC_DTYPE
    assert len(read_thunderstorm_csv(path)) == 0


def test_ground_truth_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    frame, ids = np.array([0, 0, 5]), np.array([10, 11, 10])
    x, y, z, photons = [1.5, 2000.25, 3.0], [4.0, 5.0, 6.125], [-300.0, 0.0, 250.5], [1e3, 2e3, 5e3]
    write_ground_truth_csv(path, frame, ids, x, y, z, photons)
    assert path.read_text().splitlines()[0] == (
        '"id","frame","x [nm]","y [nm]","z [nm]","intensity [photon]"'
    )
    assert path.read_text().splitlines()[3].startswith("10,6,")
    gt = read_ground_truth_csv(path)
    assert gt.dtype == GROUND_TRUTH_DTYPE
    assert gt["frame"].tolist() == [0, 0, 5] and gt["id"].tolist() == [10, 11, 10]
    np.testing.assert_allclose(gt["x_nm"], x)
    np.testing.assert_allclose(gt["z_nm"], z)
    np.testing.assert_allclose(gt["photons"], photons)


def test_ground_truth_reader_fills_missing_columns(formats_dir: Path) -> None:
    gt = read_ground_truth_csv(formats_dir / "Thunderstorm_dstorm_data.csv")
    assert gt["id"][0] == 73897 and gt["frame"][0] == 2000
    assert gt["z_nm"][0] == 0 and gt["photons"][0] == pytest.approx(296.55843680038157)


def test_ground_truth_lengths_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        write_ground_truth_csv(tmp_path / "gt.csv", [0], [0, 1], [0], [0], [0], [0])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ('"frame","y [nm]"\n1,2\n', r"\['x \[nm\]'\] are missing"),
        ('"frame","x [nm]","y [nm]"\n1,2,oops\n', "unparsable row"),
        ('"frame","x [nm]","y [nm]"\n1,2\n', "2 values per row, 3 names"),
    ],
)
def test_bad_files_raise_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(LocalizationFileError, match=message) as info:
        read_thunderstorm_csv(path)
    assert str(path) in str(info.value)


def test_missing_file_and_unwritable_folder(tmp_path: Path) -> None:
    with pytest.raises(LocalizationFileError, match="does not exist"):
        read_thunderstorm_csv(tmp_path / "nope.csv")
    with pytest.raises(LocalizationFileError, match="folder exists"):
        ThunderstormWriter(tmp_path / "no" / "such" / "dir.csv")


def test_closed_writer_and_wrong_dtype(tmp_path: Path) -> None:
    writer = ThunderstormWriter(tmp_path / "locs.csv")
    with pytest.raises(ValueError, match="LOC_DTYPE"):
        writer.append(np.zeros(1, dtype=[("frame", "i8")]))
    writer.close()
    writer.close()
    with pytest.raises(LocalizationFileError, match="closed"):
        writer.append(random_locs(1))
