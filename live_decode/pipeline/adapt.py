"""``live-decode adapt``: learn the microscope from the data itself (wake–sleep on the real movie).

Each round: the current network localizes the real frames → **wake**: the setup's PSF and
background are fitted to those frames by the camera likelihood through the differentiable
forward model (:func:`live_decode.calibration.wake.wake`) → **sleep**: the network is trained
further on simulations of the updated setup (:class:`~live_decode.training.trainer.Trainer`,
``init_from`` the current model). The next round localizes with the new network.

The run directory gets ``setup.yaml`` (the adapted setup), ``adapt.json`` (every fitted figure
and the likelihood per round), ``adapt.png`` (likelihood per round, PSF before/after, residual
images) and, unless the sleep phase is off, ``model.pt`` whose card records both the adapted
setup (its config) and the adaptation (``adaptation``: the setup it started from, what changed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from live_decode.calibration.setup import read_movies
from live_decode.calibration.wake import WakeOptions, WakeResult, wake
from live_decode.config import Config
from live_decode.errors import LiveDecodeError
from live_decode.inference.compat import check_card
from live_decode.inference.offline import localize_movie
from live_decode.messages import CameraMeta, Localizations
from live_decode.model.checkpoint import save_model
from live_decode.pipeline.build import build_localizer
from live_decode.strict_json import write_json
from live_decode.training.trainer import Trainer

log = logging.getLogger("live_decode.pipeline.adapt")

ADAPT_JSON = "adapt.json"
SETUP_YAML = "setup.yaml"
MODEL_NAME = "model"


@dataclass(frozen=True)
class AdaptOptions:
    """How many rounds, how long each sleep, which frames."""

    rounds: int = 1
    sleep: bool = True
    sleep_steps: int = 1000
    """Training steps per sleep phase (at most)."""
    minutes: float | None = None
    """Wall-time budget of all sleep phases together (split evenly between rounds)."""
    frames: int = 200
    """Movie frames read and localized (the first ones); the wake fits ``wake.max_frames``."""
    wake: WakeOptions = field(default_factory=WakeOptions)
    device: str = "auto"
    ignore_model_mismatch: bool = False
    overwrite: bool = False


@dataclass
class AdaptResult:
    """What ``adapt`` did, per round, and the files it wrote."""

    setup: Config
    rounds: list[dict[str, Any]]
    wakes: list[WakeResult]
    files: dict[str, Path] = field(default_factory=dict)


def _localize(
    model: Path, cfg: Config, movie: npt.NDArray[Any], camera: CameraMeta, opts: AdaptOptions
) -> Localizations:
    """The network's localizations of ``movie``; the card is checked against the camera only
    (the PSF is what adaptation changes)."""
    localizer = build_localizer(cfg, model, opts.device)
    check_card(localizer.card, camera, np.asarray(movie[0]), opts.ignore_model_mismatch)
    return localize_movie(localizer, movie, camera, batch_size=cfg.inference.max_batch)


def _sleep(
    cfg: Config, model: Path, out: Path, steps: int, budget_s: float | None, device: str
) -> tuple[Trainer, dict[str, float]]:
    trainer = Trainer(cfg, out, device=device, name=MODEL_NAME, init_from=model)
    final = trainer.run(steps, budget_s)
    log.info("sleep: %d steps in %.0f s: %s", trainer.step, trainer.elapsed_s, final)
    return trainer, final


def _check_out(out: Path, overwrite: bool) -> None:
    if (out / ADAPT_JSON).exists() and not overwrite:
        raise LiveDecodeError(
            f"{out} holds an earlier adaptation ({ADAPT_JSON}): pass --overwrite to replace it, "
            "or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)


def write_setup(path: Path, cfg: Config, header: str) -> Path:
    """``cfg`` as a YAML setup that ``load_config`` reads back.

    Without ``postprocess``: a run config that states thresholds replaces those the model card
    carries (chosen for that model on simulations of its setup).
    """
    data = cfg.model_dump(mode="json", exclude_none=True, exclude={"postprocess"})
    body = yaml.safe_dump(data, sort_keys=False)
    path.write_text(f"# {header}\n{body}", encoding="utf-8")
    return path


def adapt(
    model: Path,
    movies: list[Path],
    setup: Config,
    out: Path,
    options: AdaptOptions | None = None,
    setup_name: str = "setup",
) -> AdaptResult:
    """Wake–sleep rounds of ``model`` on ``movies`` (one series) recorded with ``setup``.

    Raises
    ------
    LiveDecodeError
        The model does not fit the setup's camera, too few confident localizations, a PSF that
        cannot be fitted, or ``out`` holds an earlier adaptation (without ``overwrite``).
    """
    opts = options or AdaptOptions()
    if opts.rounds < 1:
        raise LiveDecodeError(f"--rounds must be at least 1, got {opts.rounds}")
    _check_out(out, opts.overwrite)
    movie, _, _ = read_movies(movies, max_frames=opts.frames)
    camera = CameraMeta.from_camera(setup.camera)
    cfg, current = setup, model
    rounds: list[dict[str, Any]] = []
    wakes: list[WakeResult] = []
    trainer: Trainer | None = None
    budget = None if opts.minutes is None else opts.minutes * 60.0 / opts.rounds
    for r in range(1, opts.rounds + 1):
        locs = _localize(current, cfg, movie, camera, opts)
        result = wake(movie, locs, cfg, opts.wake)
        wakes.append(result)
        record: dict[str, Any] = {"round": r, "model": str(current), "wake": result.to_dict()}
        cfg = result.config
        if opts.sleep:
            trainer, final = _sleep(
                cfg, current, out / f"sleep_{r}", opts.sleep_steps, budget, opts.device
            )
            current = trainer.out_dir / f"{MODEL_NAME}.pt"
            record["sleep"] = {
                "steps": trainer.step,
                "time_s": round(trainer.elapsed_s, 1),
                "held_out": final,
            }
        rounds.append(record)
    first, last = wakes[0], wakes[-1]
    summary: dict[str, Any] = {
        "model": str(model),
        "movies": [str(p) for p in movies],
        "setup": setup_name,
        "frames_read": int(movie.shape[0]),
        "psf_before": first.psf_before,
        "psf": last.psf_after,
        "background": last.background,
        "photons": last.photons,
        "loglik_per_px": [[w.loglik_before_per_px, w.loglik_after_per_px] for w in wakes],
        "loglik_gain_per_px": last.loglik_after_per_px - first.loglik_before_per_px,
        "chi2_per_px": [[w.chi2_before_per_px, w.chi2_after_per_px] for w in wakes],
        "setup_before": {
            "psf": setup.psf.model_dump(mode="json"),
            "background": setup.background.model_dump(mode="json"),
        },
        "setup_after": {
            "psf": cfg.psf.model_dump(mode="json"),
            "background": cfg.background.model_dump(mode="json"),
        },
        "rounds": rounds,
        "sleep": opts.sleep,
    }
    files = {
        "setup": write_setup(
            out / SETUP_YAML,
            cfg,
            f"Adapted by `live-decode adapt` from {setup_name} on {', '.join(map(str, movies))}",
        )
    }
    if trainer is not None:
        card = replace(trainer.card(), adaptation=_card_record(summary))
        files["model"] = out / f"{MODEL_NAME}.pt"
        save_model(files["model"], trainer.net, card)
        summary["adapted_model"] = str(files["model"])
    else:
        summary["adapted_model"] = None
    files["json"] = write_json(out / ADAPT_JSON, summary)
    from live_decode.calibration.adapt_report import plot_adaptation

    files["png"] = plot_adaptation(out / "adapt.png", wakes)
    return AdaptResult(setup=cfg, rounds=rounds, wakes=wakes, files=files)


def _card_record(summary: dict[str, Any]) -> dict[str, Any]:
    """What the adapted model's card keeps of the adaptation (the setup it started from...)."""
    keep = (
        "model",
        "movies",
        "setup",
        "psf_before",
        "psf",
        "background",
        "loglik_per_px",
        "setup_before",
        "setup_after",
    )
    out = {k: summary[k] for k in keep}
    out["rounds"] = [
        {k: v for k, v in r.items() if k != "wake"}
        | {"loglik_gain_per_px": r["wake"]["loglik_gain_per_px"]}
        for r in summary["rounds"]
    ]
    return out
