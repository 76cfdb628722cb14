"""calibrate on movies it cannot (fully) use: each is refused or warned about, saying what to
supply instead — too short, too dense, saturated (at 65535 or at a 12-bit ceiling), constant, a
dark series of another size or one that is not dark, a missing camera type or pixel size."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import tifffile

from live_decode.calibration.camera_fit import estimate_camera
from live_decode.calibration.setup import calibrate
from live_decode.errors import CalibrationError
from live_decode.testing.calibration import simulate

Movie = npt.NDArray[np.uint16]


@pytest.fixture(scope="module")
def sparse() -> Movie:
    """100 frames of an sCMOS setup at ~1 emitter/µm²/frame (calibrates fine)."""
    return simulate("scmos", frames=100)[1]


def saturated_at(top: int) -> Callable[[Movie], Movie]:
    def make(movie: Movie) -> Movie:
        out = movie.copy()
        out[:, :8, :] = top  # a blown-out band, as a bright object at high gain gives
        return np.minimum(out, top)

    return make


REFUSED: dict[str, tuple[Callable[[Movie], Movie], str]] = {
    "constant": (lambda m: np.full((100, 32, 32), 100, np.uint16), r"constant image.*record raw"),
    "too short": (lambda m: m[:10], r"10 frames.*at least 20.*longer movie"),
    "saturated at 65535": (saturated_at(65535), r"camera's maximum.*saturated.*lower the EM gain"),
    "saturated at a 12-bit ceiling": (saturated_at(4095), r"highest value \(4095 ADU\).*saturated"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unusable_movies_are_refused_with_what_to_do(
    case: str, sparse: Movie, tmp_path: Path
) -> None:
    make, says = REFUSED[case]
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, make(sparse))
    with pytest.raises(CalibrationError, match=says):
        calibrate([path], tmp_path / "cal", pixel_size_nm=108, camera="scmos", plot=False)
    assert not (tmp_path / "cal" / "setup.yaml").exists()


def test_a_movie_too_dense_for_the_camera_estimate_is_warned_about(tmp_path: Path) -> None:
    """~4 emitters/µm²/frame: the photon-transfer gain may come out 5–10 % high — a warning
    that says how to get a better camera estimate; the setup is still written (dense movies
    are what DECODE is for)."""
    _, movie, density = simulate("emccd", frames=100, laser_mw=30.0)
    assert density > 3.0
    path = tmp_path / "dense.tif"
    tifffile.imwrite(path, movie)
    result = calibrate(
        [path], tmp_path / "cal", pixel_size_nm=117, camera="emccd", refine=False, plot=False
    )
    assert any(
        re.search(r"dense for (a reliable|the) camera estimate.*sparser", w)
        for w in result.warnings
    ), result.warnings
    assert (tmp_path / "cal" / "setup.yaml").is_file()


def test_dark_series_of_another_size_or_not_dark(sparse: Movie, tmp_path: Path) -> None:
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, sparse)
    small = tmp_path / "small_dark.tif"
    tifffile.imwrite(small, np.full((20, 16, 16), 100, np.uint16))
    with pytest.raises(CalibrationError, match=r"16×16 px but the movie 64×64.*same camera region"):
        calibrate([good], tmp_path / "x", pixel_size_nm=108, camera="scmos", dark=small)
    lit = sparse[:30] + np.uint16(50)  # frames with the light on, not a dark series
    with pytest.raises(CalibrationError, match=r"not dark.*shutter closed"):
        estimate_camera(sparse, kind="scmos", dark=lit)


def test_a_missing_camera_type_or_pixel_size_is_asked_for(sparse: Movie, tmp_path: Path) -> None:
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, sparse)  # plain TIFF: the file says nothing
    with pytest.raises(CalibrationError, match="--camera emccd or --camera scmos"):
        calibrate([good], tmp_path / "x", pixel_size_nm=108)
    with pytest.raises(CalibrationError, match="--pixel-size-nm"):
        calibrate([good], tmp_path / "x", camera="scmos")


def test_clipped_spots_and_a_short_movie_are_warned_about(sparse: Movie, tmp_path: Path) -> None:
    """Marginal movies calibrate, with a warning that says what would be better."""
    clipped = sparse.copy()
    clipped.reshape(-1)[::4000] = 65535  # 0.025 % of the pixels at the ceiling
    est = estimate_camera(clipped, kind="scmos", qe=0.8)
    assert any("clip" in w and "lower the EM gain" in w for w in est.warnings), est.warnings
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, sparse[:40])
    result = calibrate([path], tmp_path / "cal", pixel_size_nm=108, camera="scmos", plot=False)
    assert any("only 40 frames" in w and "few hundred" in w for w in result.warnings)
    assert (tmp_path / "cal" / "setup.yaml").is_file()
