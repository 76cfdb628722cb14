"""``ld.load_model`` and :class:`Model`: a trained network with its card, localizing movies.

The model runs exactly as ``live-decode localize`` runs it: the same localizer builder (detection
thresholds from the config's ``postprocess`` section where it has one, else the card's; the
config's ``inference.speed`` options and device), the same model-card check against the camera
on the first frame, and the same fixed chunks of ``inference.max_batch`` frames
(:class:`live_decode.pipeline.offline.OfflineStream`), so both give the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from live_decode.api.configs import ConfigLike, demo_config, load_config
from live_decode.api.tables import locs_to_frame
from live_decode.config import Config
from live_decode.messages import CameraMeta, Localizations, empty_locs

if TYPE_CHECKING:
    import pandas as pd

    from live_decode.model.card import ModelCard
    from live_decode.model.seam import NetworkLocalizer

log = logging.getLogger("live_decode.api.models")

MovieLike = npt.NDArray[Any] | str | Path | Sequence[str | Path] | Iterable[npt.NDArray[Any]]
"""A (T, H, W) array of camera ADU, a TIFF / OME-TIFF path (or a list: one series), or an
iterator of (H, W) frames."""

CameraLike = CameraMeta | ConfigLike | None
"""The camera of a movie: its :class:`CameraMeta`, a config (its ``camera`` section), or None."""

Progress = Callable[[int, int], None]
"""progress(frames_done, frames_total); frames_total is 0 when unknown (an iterator)."""


def load_model(
    path: str | Path | None = None,
    *,
    config: ConfigLike | None = None,
    device: str | None = None,
) -> Model:
    """Load a model file and its card, ready to localize.

    Parameters
    ----------
    path
        A ``.pt`` model file written by ``live-decode train``; None: the config's
        ``inference.model``, else the bundled demo model.
    config
        The setup the model runs in, as for ``live-decode localize --config``: detection
        thresholds (its ``postprocess`` section, when it has one; else the card's), speed
        options (``inference.speed``), device and frames per network call
        (``inference.max_batch``), and the camera of movies without metadata. None: the demo
        config, like the CLI without ``--config``.
    device
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; None: the config's.

    Raises
    ------
    live_decode.errors.ModelCardError
        If the file is missing, is not a live_decode model, or its card is invalid.
    """
    from live_decode.pipeline.build import build_localizer

    cfg = load_config(config) if config is not None else demo_config()
    override = Path(path) if path is not None else None
    return Model(build_localizer(cfg, override, device), cfg, camera_from_card=config is None)


class Model:
    """A loaded network with its model card (:attr:`card`), on :attr:`device`.

    Build it with :func:`load_model`. :meth:`localize` takes a movie and returns one row per
    localization.
    """

    def __init__(
        self, localizer: NetworkLocalizer, config: Config, *, camera_from_card: bool = False
    ) -> None:
        self._localizer = localizer
        self.config = config
        """The setup config the model runs with (thresholds, speed, camera fallback)."""
        self._camera_from_card = camera_from_card  # no config given: the card's camera

    @property
    def card(self) -> ModelCard:
        """What the network was trained for (camera, PSF, z range...) and how well it does."""
        return self._localizer.card

    @property
    def device(self) -> str:
        """The torch device it runs on, e.g. ``"cpu"`` or ``"cuda:0"``."""
        return str(self._localizer.device)

    @property
    def localizer(self) -> NetworkLocalizer:
        """The underlying :class:`live_decode.model.seam.NetworkLocalizer` (not public API)."""
        return self._localizer

    def __repr__(self) -> str:
        return f"<live_decode Model {self.card.summary()} on {self.device}>"

    def localize(
        self,
        movie: MovieLike,
        camera: CameraLike = None,
        *,
        ignore_model_mismatch: bool = False,
        progress: Progress | None = None,
    ) -> pd.DataFrame:
        """Localize every frame of ``movie``, in order, with temporal context (t−1, t, t+1).

        Parameters
        ----------
        movie
            A (T, H, W) NumPy array of camera ADU (a memory-mapped one is read chunk by chunk),
            a TIFF / OME-TIFF path or a list of paths (one series, read frame by frame), or an
            iterator of (H, W) ADU frames (streamed: memory stays bounded by one chunk of
            ``inference.max_batch`` frames plus the localizations).
        camera
            The camera that recorded the movie; the card is checked against it exactly as the
            live worker checks it. A :class:`CameraMeta` is used as is (also for files). A config
            (:class:`Config`, mapping or YAML path) gives its ``camera`` section, and its PSF,
            z range and temporal context are checked against the card too; for files, metadata
            written by ``live-decode simulate`` takes precedence over it. None: file metadata,
            else the model's config (:attr:`config`); only the camera is checked.
        ignore_model_mismatch
            Localize even if the card does not fit the camera (the mismatches are logged).
        progress
            Called after every chunk with (frames done, frames in total or 0 if unknown).

        Returns
        -------
        pandas.DataFrame
            One row per localization, columns (see :data:`live_decode.LOC_COLUMNS`):
            ``frame`` (int64, 0-based), ``x_nm``, ``y_nm`` (x the column, y the row; pixel
            (row i, column j) covers x ∈ [j, j+1) px), ``z_nm``, ``photons``, ``bg``
            (photons/px), ``prob`` (detection probability), ``sigma_x_nm``, ``sigma_y_nm``,
            ``sigma_z_nm``, ``sigma_photons`` (predicted 1σ uncertainties), float32.

        Raises
        ------
        live_decode.errors.ModelCardError
            If the card does not fit the camera or the frames (every difference is named, with
            its fix), unless ``ignore_model_mismatch``.
        live_decode.errors.MovieError
            If a movie file cannot be read (what was localized before is lost: use
            ``live-decode localize`` to keep partial results in a run directory).
        """
        return locs_to_frame(
            self.localize_array(
                movie, camera, ignore_model_mismatch=ignore_model_mismatch, progress=progress
            )
        )

    def localize_array(
        self,
        movie: MovieLike,
        camera: CameraLike = None,
        *,
        ignore_model_mismatch: bool = False,
        progress: Progress | None = None,
    ) -> Localizations:
        """:meth:`localize` returning the structured array (``LOC_DTYPE``) instead of a table."""
        from live_decode.pipeline.offline import OfflineStream, source_frames
        from live_decode.sources.base import SourceFrame
        from live_decode.sources.replay import ReplaySource

        check_config, given = self._camera_and_config(camera)
        source: ReplaySource | None = None
        frames: Iterable[npt.ArrayLike | SourceFrame]
        total = 0
        paths = _paths_of(movie)
        default, label = self._default_camera()
        if paths is not None:
            source = ReplaySource(
                paths,
                given if given is not None else default,
                prefer_file_metadata=not isinstance(camera, CameraMeta),
                fallback_label=label,
            )
            cam, frames, total = source.camera, source_frames(source), source.n_frames
        else:
            cam = given if given is not None else default
            if given is None:
                log.info("camera calibration: the %s (pass camera= to give yours)", label)
            frames, total = _frames_of(movie)
        stream = OfflineStream(
            self._localizer,
            cam,
            config=check_config,
            ignore_model_mismatch=ignore_model_mismatch,
            batch_frames=self.config.inference.max_batch,
        )
        parts: list[Localizations] = []
        try:
            for result in stream.batches(frames):
                parts.append(result.locs)
                if progress is not None:
                    progress(stream.processor.frames_processed, total)
        finally:
            stream.close()
            if source is not None:
                source.close()
        return np.concatenate(parts) if parts else empty_locs()

    def _default_camera(self) -> tuple[CameraMeta, str]:
        """The camera of a movie given without one, and its source label: the model card's
        camera when the model was loaded without a config, else that config's."""
        from live_decode.sources.base import camera_from_config
        from live_decode.sources.replay import card_camera_label

        if self._camera_from_card:
            card = self.card
            return camera_from_config(card.parsed_config), card_camera_label(card.name)
        return camera_from_config(self.config), "camera of the model's config"

    def _camera_and_config(self, camera: CameraLike) -> tuple[Config | None, CameraMeta | None]:
        """(config whose PSF/z range are checked, camera) for a ``camera`` argument."""
        from live_decode.sources.base import camera_from_config

        if camera is None:
            return None, None
        if isinstance(camera, CameraMeta):
            return None, camera
        cfg = load_config(camera)
        return cfg, camera_from_config(cfg)


def _paths_of(movie: object) -> list[Path] | None:
    """The movie files ``movie`` names (a path or a list of paths), else None."""
    if isinstance(movie, str | Path):
        return [Path(movie)]
    if isinstance(movie, Sequence) and movie and all(isinstance(p, str | Path) for p in movie):
        return [Path(p) for p in movie]
    return None


def _frames_of(movie: object) -> tuple[Iterable[npt.ArrayLike], int]:
    """(frames, count) of an array (count T) or an iterator of frames (count 0: unknown)."""
    if isinstance(movie, np.ndarray):
        if movie.ndim != 3:
            raise ValueError(
                f"a movie array must be (T, H, W) camera ADU, got shape {movie.shape}; "
                "a single frame is movie[None]"
            )
        return _rows(movie), int(movie.shape[0])
    if isinstance(movie, Iterable):
        return movie, 0
    raise TypeError(
        f"cannot localize a {type(movie).__name__}: pass a (T, H, W) array, a TIFF path (or a "
        "list of paths) or an iterator of (H, W) frames"
    )


def _rows(movie: npt.NDArray[Any]) -> Iterator[npt.NDArray[Any]]:
    for t in range(movie.shape[0]):
        yield movie[t]
