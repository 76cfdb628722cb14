"""``ld.simulate``, ``ld.evaluate``, ``ld.save``, ``ld.read_locs``: movies, truth and files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from live_decode.api.configs import ConfigLike, demo_config, load_config
from live_decode.api.tables import TableLike, as_locs, as_structured, locs_to_frame
from live_decode.config import Config, config_from_dict
from live_decode.messages import TRUTH_DTYPE

if TYPE_CHECKING:
    import pandas as pd

    from live_decode.api.models import Model

LocFormat = Literal["csv", "hdf5", "decode_h5", "smap"]
"""``csv``: ThunderSTORM CSV (nm, frames 1-based) ``locs.csv``; ``hdf5``: Picasso HDF5 + YAML
sidecar (px, Picasso's pixel-centre convention) ``locs.hdf5`` — the files every run directory
holds; ``decode_h5``: DECODE ``locs.decode.h5``; ``smap``: SMAP ``locs_sml.mat``."""

LOC_FILE_NAMES: dict[str, str] = {
    "csv": "locs.csv",
    "hdf5": "locs.hdf5",
    "decode_h5": "locs.decode.h5",
    "smap": "locs_sml.mat",
}


class Simulation(NamedTuple):
    """A simulated acquisition: ``movie, truth = ld.simulate(...)``."""

    movie: npt.NDArray[np.uint16]
    """(T, H, W) camera ADU, as the configured camera would record them."""
    truth: pd.DataFrame
    """Every emitter of every frame: ``frame`` (0-based), ``id`` (the fluorophore; an emitter
    on for several frames keeps it), ``x_nm``, ``y_nm`` (x the column), ``z_nm``, ``photons``."""


def simulate(
    config: ConfigLike | None = None,
    frames: int = 100,
    seed: int | None = None,
    *,
    device: str = "cpu",
) -> Simulation:
    """Simulate an acquisition with the microscope of ``config`` (as ``live-decode simulate``).

    Parameters
    ----------
    config
        The setup (camera, PSF, emitters, photophysics, field of view ``microscope.fov_px``);
        None: the demo config.
    frames
        Frames to acquire (T); the movie is held in memory (T × H × W × 2 bytes).
    seed
        Replaces ``microscope.seed``; the same seed gives the same movie.
    device
        ``cpu``, ``cuda``, ``cuda:N`` or ``auto``: where the simulation runs.

    Returns
    -------
    Simulation
        ``(movie, truth)``: (T, H, W) uint16 ADU and the ground-truth table (nm, photons).
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    from live_decode.simulation.microscope import SimulatedMicroscope

    cfg = load_config(config) if config is not None else demo_config()
    if seed is not None:
        data = cfg.model_dump()
        data["microscope"]["seed"] = seed
        cfg = config_from_dict(data, source=f"config with seed {seed}")
    from live_decode.model.device import resolve_device

    microscope = SimulatedMicroscope(cfg, device=resolve_device(device))
    h, w = microscope.fov_px
    movie = np.empty((frames, h, w), dtype=np.uint16)
    truth = []
    for t in range(frames):
        frame = microscope.next_frame()
        movie[t] = frame.adu
        truth.append(frame.truth)
    table = np.concatenate(truth) if truth else np.zeros(0, TRUTH_DTYPE)
    from live_decode.api.tables import structured_to_frame

    return Simulation(movie, structured_to_frame(table))


def evaluate(
    locs: TableLike,
    ground_truth: TableLike,
    config: ConfigLike | None = None,
    *,
    model: Model | None = None,
    max_lateral_nm: float = 250.0,
    max_axial_nm: float = 500.0,
    frame_shape_px: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Score localizations against ground truth: the metrics ``live-decode evaluate --json`` prints.

    Parameters
    ----------
    locs
        Localizations (``model.localize``'s DataFrame, or ``LOC_DTYPE`` array), nm, 0-based.
    ground_truth
        ``frame`` (0-based), ``x_nm``, ``y_nm``, ``z_nm``, ``photons`` per emitter
        (``ld.simulate``'s truth, or ``read_ground_truth_csv``).
    config
        The setup the movie was recorded with (PSF, camera, background: the CRLB). None: the
        model's card config when ``model`` is given, else the demo config.
    model
        The model that localized: its card says whether z is scored (a 2-D model's axial
        figures are None, "n/a").
    max_lateral_nm, max_axial_nm
        Greedy matching radii, nm.
    frame_shape_px
        (H, W) of the frames (the CRLB of emitters near an edge); None: ``microscope.fov_px``.

    Returns
    -------
    dict
        ``jaccard``, ``rmse_lat_nm``, ``rmse_ax_nm``, ``rmse_vol_nm``, ``efficiency`` (and its
        lateral / axial / volumetric parts), ``n_tp``, ``n_fp``, ``n_fn``, ``is_3d``,
        ``not_applicable``, ``sigma_calibration``, ``rmse_vs_crlb`` (per photon bin), ``notes``.
        NaN where a figure is undefined (no matches); None where it does not apply.
    """
    from live_decode.evaluation.report import evaluate_localizations
    from live_decode.model.scaling import Scaling

    if config is not None:
        cfg = load_config(config)
    elif model is not None:
        cfg = model.card.parsed_config
    else:
        cfg = demo_config()
    is_3d = model.card.parsed_scaling.is_3d if model is not None else Scaling.from_config(cfg).is_3d
    shape = frame_shape_px or (int(cfg.microscope.fov_px[0]), int(cfg.microscope.fov_px[1]))
    report = evaluate_localizations(
        as_locs(locs),
        as_structured(ground_truth, TRUTH_DTYPE, "ground-truth"),
        cfg,
        is_3d=is_3d,
        max_lateral_nm=max_lateral_nm,
        max_axial_nm=max_axial_nm,
        frame_shape_px=shape,
    )
    return report.to_dict()


def save(
    locs: TableLike,
    run_dir: str | Path,
    formats: Sequence[LocFormat] = ("csv", "hdf5"),
    *,
    config: ConfigLike | None = None,
    frame_shape_px: tuple[int, int] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write localizations into ``run_dir`` in the formats a run directory holds.

    Parameters
    ----------
    locs
        Localizations (DataFrame or ``LOC_DTYPE`` array), nm.
    run_dir
        Directory (created); the files are ``locs.csv`` and ``locs.hdf5`` (+ ``locs.yaml``).
    formats
        Any of ``"csv"`` (ThunderSTORM: nm, frames 1-based), ``"hdf5"`` (Picasso: px),
        ``"decode_h5"`` (DECODE) and ``"smap"`` (SMAP ``_sml.mat``).
    config
        Pixel size and field of view for Picasso (``camera.pixel_size_nm``,
        ``microscope.fov_px``); None: the demo config.
    frame_shape_px
        (H, W) of the frames, overriding the config's field of view.
    overwrite
        Replace existing files (else an existing file is an error).

    Returns
    -------
    dict
        Format → path written.
    """
    from live_decode.errors import LiveDecodeError
    from live_decode.io.formats import write_extra_formats
    from live_decode.io.picasso import PicassoWriter
    from live_decode.io.thunderstorm import has_z, write_thunderstorm_csv

    unknown = [f for f in formats if f not in LOC_FILE_NAMES]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; use {sorted(LOC_FILE_NAMES)}")
    table = as_locs(locs)
    cfg: Config = load_config(config) if config is not None else demo_config()
    out = Path(run_dir)
    paths: dict[str, Path] = {f: out / LOC_FILE_NAMES[f] for f in formats}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise LiveDecodeError(f"{', '.join(existing)} exist(s); pass overwrite=True")
    out.mkdir(parents=True, exist_ok=True)
    if "csv" in paths:
        write_thunderstorm_csv(paths["csv"], table)
    h, w = frame_shape_px or (int(cfg.microscope.fov_px[0]), int(cfg.microscope.fov_px[1]))
    extra = [f for f in formats if f in ("decode_h5", "smap")]
    if extra:
        write_extra_formats(
            table,
            out,
            extra,
            pixel_size_nm=cfg.camera.pixel_size_nm,
            width_px=w,
            height_px=h,
            with_z=has_z(table),
        )
    if "hdf5" in paths:
        writer = PicassoWriter(
            paths["hdf5"],
            width_px=w,
            height_px=h,
            pixel_size_nm=cfg.camera.pixel_size_nm,
            with_z=has_z(table),
        )
        try:
            writer.append(table)
        finally:
            writer.close()
    return paths


def read_locs(path: str | Path, *, pixel_size_nm: float | None = None) -> pd.DataFrame:
    """Read a localization file of any format we read or write, as a DataFrame.

    ``.csv``: ThunderSTORM (ours, ThunderSTORM's, SMAP's export); ``.hdf5``: Picasso (with its
    YAML sidecar; ``pixel_size_nm`` when the sidecar lacks it); ``.h5``: DECODE; ``.mat``: SMAP
    ``_sml.mat``. The columns are those of ``model.localize`` (nm, frames 0-based); what a
    format does not carry is NaN (``prob`` 1, ``z_nm`` 0 for 2-D files).
    """
    from live_decode.io.formats import read_locs as read_any

    return locs_to_frame(read_any(Path(path), pixel_size_nm=pixel_size_nm))
