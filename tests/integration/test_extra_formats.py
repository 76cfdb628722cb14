"""``inference.extra_formats``: localize also leaves DECODE h5 and SMAP files that locan reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from live_decode.cli.main import main
from live_decode.inference.worker import CSV_NAME, HDF5_NAME
from live_decode.io.formats import EXTRA_FORMATS, read_locs
from live_decode.io.picasso import EDGE_CLIP_KEY

DEMO = Path(__file__).parents[2] / "configs" / "demo.yaml"


def test_localize_writes_decode_and_smap_files_that_locan_reads(tmp_path: Path) -> None:
    locan = pytest.importorskip("locan")
    movie_dir, run_dir = tmp_path / "movie", tmp_path / "run"
    argv = ["simulate", str(DEMO), "--frames", "12", "--out", str(movie_dir), "--seed", "7"]
    assert main(argv) == 0
    config = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    config.setdefault("inference", {})["extra_formats"] = ["decode_h5", "smap"]
    cfg_path = tmp_path / "with_formats.yaml"
    cfg_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    movie = movie_dir / "movie.ome.tif"
    argv = ["localize", str(movie), "--out", str(run_dir), "--config", str(cfg_path)]
    assert main([*argv, "--device", "cpu"]) == 0

    ours = read_locs(run_dir / CSV_NAME)
    assert len(ours) > 50
    px_nm = float(config.get("camera", {}).get("pixel_size_nm", 100.0))
    decode = locan.load_decode_file(run_dir / EXTRA_FORMATS["decode_h5"]).data
    smap = locan.load_SMAP_file(run_dir / EXTRA_FORMATS["smap"])
    assert len(decode) == len(smap.data) == len(ours)
    # DECODE: x = row in px with centres at integers; frames 0-based.
    np.testing.assert_allclose((decode["position_y"] + 0.5) * px_nm, ours["x_nm"], atol=0.01)
    np.testing.assert_allclose((decode["position_x"] + 0.5) * px_nm, ours["y_nm"], atol=0.01)
    np.testing.assert_array_equal(decode["frame"], ours["frame"])
    # SMAP: nm like ours, frames 1-based; the 2-D demo model's file has no z.
    assert smap.dimension == 2
    np.testing.assert_allclose(smap.data["position_x"], ours["x_nm"], atol=0.01)
    np.testing.assert_allclose(smap.data["position_y"], ours["y_nm"], atol=0.01)
    np.testing.assert_array_equal(smap.data["frame"], ours["frame"] + 1)


def test_run_files_of_a_2d_model_load_whole_in_locan_and_picasso(tmp_path: Path) -> None:
    """The real model's output: no z column in the CSV, no row lost by Picasso's load_locs."""
    locan = pytest.importorskip("locan")
    picasso_io = pytest.importorskip("picasso.io")
    movie_dir, run_dir = tmp_path / "movie", tmp_path / "run"
    argv = ["simulate", str(DEMO), "--frames", "20", "--out", str(movie_dir), "--seed", "8"]
    assert main(argv) == 0
    assert main(["localize", str(movie_dir / "movie.ome.tif"), "--out", str(run_dir)]) == 0
    ours = read_locs(run_dir / CSV_NAME)
    assert "z [nm]" not in (run_dir / CSV_NAME).read_text().splitlines()[0]
    locdata = locan.load_thunderstorm_file(run_dir / CSV_NAME)
    assert locdata.dimension == 2 and len(locdata) == len(ours)
    locan.render_2d(locdata, bin_size=20)
    theirs, info = picasso_io.load_locs(str(run_dir / HDF5_NAME))
    assert len(theirs) == len(ours)  # none dropped by Picasso's sanity filter
    moved = ((theirs["dx_edge_px"] != 0) | (theirs["dy_edge_px"] != 0)).to_numpy()
    assert info[-1][EDGE_CLIP_KEY] == int(moved.sum())
    px_nm = 100.0
    np.testing.assert_allclose((theirs["x"][~moved] + 0.5) * px_nm, ours["x_nm"][~moved], atol=0.01)
    np.testing.assert_allclose((theirs["y"][~moved] + 0.5) * px_nm, ours["y_nm"][~moved], atol=0.01)
