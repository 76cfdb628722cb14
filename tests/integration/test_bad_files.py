"""Bad movie files: a clear error naming the file and what to do, and nothing already written lost.

Each case runs through :class:`ReplaySource` (the error type and message) and through
``live-decode localize`` as a subprocess (exit code 2, the message on stderr, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from live_decode.config import load_config
from live_decode.errors import LiveDecodeError, ModelCardError, MovieError
from live_decode.inference.compat import check_card
from live_decode.inference.worker import CSV_NAME, HDF5_NAME
from live_decode.io.picasso import read_picasso_hdf5
from live_decode.io.thunderstorm import read_thunderstorm_csv
from live_decode.messages import CameraMeta
from live_decode.model.checkpoint import ModelCard, load_model
from live_decode.pipeline.build import DEMO_CONFIG
from live_decode.sources.base import camera_from_config
from live_decode.sources.replay import ReplaySource
from live_decode.testing.frames import camera_movie

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FRAMES, SIZE = 12, 32


def noise(n: int = FRAMES, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return camera_movie((n, size, size), seed=seed)


def truncated(path: Path) -> Path:
    """A movie cut in the middle of its pixel data (an interrupted copy)."""
    tifffile.imwrite(path, noise())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(1).bytes(20_000))
    return path


def float64_movie(path: Path) -> Path:
    tifffile.imwrite(path, noise().astype(np.float64))
    return path


def rgb_movie(path: Path) -> Path:
    tifffile.imwrite(path, np.stack([noise().astype(np.uint8)] * 3, axis=-1), photometric="rgb")
    return path


def tiny_frames(path: Path) -> Path:
    tifffile.imwrite(path, noise(size=4))
    return path


def missing(path: Path) -> Path:
    return path


@dataclass(frozen=True)
class Case:
    make: Callable[[Path], Path]
    error: type[LiveDecodeError]
    says: tuple[str, ...]  # what is wrong and what to do, besides the file name


CASES = {
    "truncated": Case(truncated, MovieError, ("truncated", "copy or export the movie again")),
    "corrupt": Case(corrupt, MovieError, ("cannot read this TIFF", "is the file complete")),
    "float64": Case(float64_movie, MovieError, ("float64 is not supported", "use one of")),
    "rgb": Case(rgb_movie, MovieError, ("2-D frames", "export a single channel")),
    "missing": Case(missing, MovieError, ("not found", "check the path")),
}


@pytest.fixture(scope="module")
def model(tiny_model: Path) -> tuple[Path, ModelCard]:
    """The shared tiny untrained network (conftest) and its card."""
    return tiny_model, load_model(tiny_model)[1]


@pytest.fixture(scope="module")
def camera() -> CameraMeta:
    return camera_from_config(load_config(DEMO_CONFIG))


def localize(out: Path, model: Path, *movies: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "live_decode", "localize", *map(str, movies)]
    cmd += ["--out", str(out), "--model", str(model)]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=REPO, timeout=120)


def assert_clear_error(
    proc: subprocess.CompletedProcess[str], file: Path, says: tuple[str, ...]
) -> str:
    """Exit code 2, one ``error:`` line naming the file and the remedy, no traceback."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    message = proc.stderr[proc.stderr.index("error: ") :]
    assert str(file) in message
    for text in says:
        assert text in message
    return message


# --------------------------------------------------------------------------- one bad file
@pytest.mark.parametrize("name", list(CASES))
def test_replay_source_names_the_file_and_the_remedy(
    name: str, tmp_path: Path, camera: CameraMeta
) -> None:
    case = CASES[name]
    path = case.make(tmp_path / f"{name}.tif")
    with pytest.raises(case.error) as info:
        ReplaySource([path], camera)
    assert str(path) in str(info.value)
    for text in case.says:
        assert text in str(info.value)


@pytest.mark.parametrize("name", list(CASES))
def test_localize_exits_2_with_the_message(
    name: str, tmp_path: Path, model: tuple[Path, ModelCard]
) -> None:
    case = CASES[name]
    path = case.make(tmp_path / f"{name}.tif")
    assert_clear_error(localize(tmp_path / "run", model[0], path), path, case.says)
    assert not (tmp_path / "run" / CSV_NAME).exists()  # failed before anything was localized


def test_frames_the_model_cannot_take(
    tmp_path: Path, model: tuple[Path, ModelCard], camera: CameraMeta
) -> None:
    """4×4 px frames: the replay reads them; the model card check refuses them."""
    path = tiny_frames(tmp_path / "tiny_frames.tif")
    source = ReplaySource([path], camera)
    frame = source.read()
    source.close()
    assert frame is not None and frame.pixels.shape == (4, 4)
    with pytest.raises(ModelCardError, match="frame size 4×4 px"):
        check_card(model[1], camera, frame.pixels, override=False)

    says = ("frame size 4×4 px (smaller than 8 px)", "--ignore-model-mismatch")
    assert_clear_error(localize(tmp_path / "run", model[0], path), path, says)


# --------------------------------------------------------------------------- series
def test_series_with_a_truncated_second_file_fails_before_starting(
    tmp_path: Path, model: tuple[Path, ModelCard]
) -> None:
    first = tmp_path / "a.tif"
    tifffile.imwrite(first, noise())
    second = truncated(tmp_path / "b.tif")
    message = assert_clear_error(
        localize(tmp_path / "run", model[0], first, second), second, ("truncated",)
    )
    assert str(first) not in message  # the file to fix, not the good one


def test_series_failing_mid_stream_keeps_what_was_localized(
    tmp_path: Path, model: tuple[Path, ModelCard], camera: CameraMeta
) -> None:
    """The second file's last frame is cut (its index is intact, so this shows only on reading
    that frame): the error names it, and the frames before it stay in the run directory."""
    first = tmp_path / "a.tif"
    tifffile.imwrite(first, noise(seed=1))
    second = tmp_path / "b.tif"
    tifffile.imwrite(second, noise(seed=2), compression="zlib")  # one strip per frame
    with tifffile.TiffFile(second) as tif:
        last = tif.pages[-1]
        assert isinstance(last, tifffile.TiffPage)
        cut = last.dataoffsets[0] + last.databytecounts[0] // 2
    second.write_bytes(second.read_bytes()[:cut])

    source = ReplaySource([first, second], camera)  # opens fine: every frame is indexed
    with pytest.raises(MovieError, match=f"{second}: frame {FRAMES - 1} cannot be read"):
        while source.read() is not None:
            pass
    source.close()

    run = tmp_path / "run"
    says = (f"frame {FRAMES - 1} cannot be read", "copy or export the movie again")
    assert_clear_error(localize(run, model[0], first, second), second, says)
    # Everything before the bad frame was localized and flushed: both files agree.
    csv = read_thunderstorm_csv(run / CSV_NAME)
    assert set(np.unique(csv["frame"])) == set(range(2 * FRAMES - 1))
    h5 = read_picasso_hdf5(run / HDF5_NAME)
    np.testing.assert_array_equal(np.sort(h5["frame"]), np.sort(csv["frame"]))
    assert (run / "summary.json").is_file()
