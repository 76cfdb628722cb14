"""``ld.fit``: a model made for the user's own microscope, from its raw movie (calibrate → train
→ localize), as ``live-decode fit`` runs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from live_decode.pipeline.fit import FitResult


def fit(
    movies: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    minutes: float | None = None,
    steps: int | None = None,
    device: str = "auto",
    init_from: str | Path | None = "default",
    pixel_size_nm: float | None = None,
    camera: str | None = None,
    dark: str | Path | None = None,
    qe: float | None = None,
    refine: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    overrides: Mapping[str, Any] | None = None,
    recount_rounds: int = 1,
    on_stage: Callable[[str, str], None] | None = None,
    on_train: Callable[[int, int, float], None] | None = None,
    on_localize: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Calibrate a raw movie, train a network for that setup, and localize the movie with it.

    Writes ``out/calibration/`` (``setup.yaml``, ``calibration.json``, ``calibration.png``),
    ``out/model/`` (``model.pt`` with its card, ``config.yaml``, checkpoints), ``out/run/`` (the
    run directory ``live-decode localize`` writes) and ``out/fit.json``.

    Parameters
    ----------
    movies
        Raw TIFF / OME-TIFF movie(s) of the sample, in order (one series).
    out
        The folder for everything ``fit`` writes.
    minutes, steps
        Training budget: at most ``steps`` steps (None: the setup's ``training.steps``) and at
        most ``minutes`` of training wall time. How long it will take is measured on the
        device and reported (``on_stage('estimate', ...)``, :attr:`FitResult.estimate`) first.
    device
        ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``: training and inference.
    init_from
        ``"default"``: fine-tune the bundled demo model where its network fits the setup, else
        train from scratch; None: from scratch; a ``.pt`` path: fine-tune that model.
    pixel_size_nm, camera, dark, qe
        As for ``live-decode calibrate``: what the file does not say (pixel size, ``emccd`` or
        ``scmos``), a dark series, the quantum efficiency.
    refine
        False skips the calibration's simulation-based correction of its spot estimators
        (faster; ``calibrate --no-refine``).
    resume
        Continue an interrupted fit in ``out`` from its checkpoint (the setup is kept).
    overwrite
        Start afresh over an earlier fit in ``out``.
    overrides
        Merged into the calibrated setup before training, section by section, e.g.
        ``{"model": {"size": "paper"}}`` or ``{"training": {"crop_px": 24}}``.
    recount_rounds
        Density recounts during training (0 to 3, default 1): after each further quarter of the
        budget the network counts the movie, the count is corrected for the network's undercount
        on simulated windows of the setup, and where the movie is denser than the setup says
        (the corrected count > 15 % above it and at least 1.5 µm⁻², where a spot count
        undercounts), its density and training density range follow (``out/calibration/
        setup.yaml`` rewritten, ``out/model/recount.json``, :attr:`FitResult.density`); the
        time they take is in the estimate. A range or density given in ``overrides`` is kept.
    on_stage, on_train, on_localize
        Progress: ``(stage, message)``; ``(step, total_steps, loss)``; ``(frames, total)``.

    Returns
    -------
    FitResult
        Paths, the training estimate, the held-out ``metrics`` (Jaccard, RMSE ...) of the
        trainer's final evaluation, and the run's ``summary``.

    Raises
    ------
    live_decode.errors.CalibrationError
        A movie that cannot be calibrated, with what to supply instead.
    live_decode.errors.LiveDecodeError
        ``out`` holds an earlier fit and neither ``resume`` nor ``overwrite`` was given, or
        ``recount_rounds`` is outside 0–3.
    """
    from live_decode.pipeline.fit import fit as run

    paths = [Path(movies)] if isinstance(movies, str | Path) else [Path(m) for m in movies]
    return run(
        paths,
        Path(out),
        minutes=minutes,
        steps=steps,
        device=device,
        init_from=init_from if init_from in (None, "default") else Path(str(init_from)),
        pixel_size_nm=pixel_size_nm,
        camera=camera,
        dark=None if dark is None else Path(dark),
        qe=qe,
        refine=refine,
        resume=resume,
        overwrite=overwrite,
        overrides=overrides,
        recount_rounds=recount_rounds,
        on_stage=on_stage,
        on_train=on_train,
        on_localize=on_localize,
    )
