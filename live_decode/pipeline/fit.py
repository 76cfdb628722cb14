"""``fit``: from a lab's own raw movie to a model made for its microscope, in one call.

calibrate the movie (``OUT/calibration/``: setup.yaml, calibration.json/.png) → train a network
on simulations of that setup (``OUT/model/``: model.pt + card, checkpoints; resumable) → localize
the movie with it (``OUT/run/``: the run directory ``live-decode localize`` writes) →
``OUT/fit.json`` with what each stage found and the held-out accuracy the training reached.

The training is interrupted by ``recount_rounds`` density recounts (default 1, after a quarter of
the budget; :mod:`.fit_recount`): the network counts the movie, the count is corrected for its
undercount on simulated windows, and where the movie is denser than the setup says (a spot
count saturates) the setup's density and training range are widened and training goes on.

Before training, a few steps are timed on the training device and the duration of the whole
budget, recounts included, is stated (:class:`TrainingEstimate`), so a run that would take a day
on a CPU says so in its first seconds.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from live_decode.calibration.setup import calibrate
from live_decode.config import DEMO_CONFIG, Config, config_from_dict, load_config
from live_decode.errors import LiveDecodeError
from live_decode.model.card import read_card
from live_decode.model.checkpoint import bundled_model_path, save_model
from live_decode.model.network import DecodeNet
from live_decode.pipeline.fit_recount import (
    RECOUNT_NAME,
    RecountRound,
    before_round,
    check_rounds,
    continue_training,
    read_pending,
    read_rounds,
    recount_round,
    rewrite_setup,
    sample_blocks,
    stage_ends,
    write_rounds,
    write_text_atomic,
)
from live_decode.pipeline.offline import localize_files
from live_decode.strict_json import write_json
from live_decode.training.recount import estimate_recount_s
from live_decode.training.trainer import Trainer

log = logging.getLogger("live_decode.pipeline.fit")

TIMED_STEPS = 3
"""Training steps timed for the estimate (the first one, which warms up, is not counted)."""
CONFIG_NAME = "config.yaml"
"""The training config in ``OUT/model/``: the calibrated setup with any overrides applied."""
FIT_NAME = "fit.json"

# Where fit puts each stage's output, under OUT.
CALIBRATION_DIR, MODEL_DIR, RUN_DIR = "calibration", "model", "run"

StageCallback = Callable[[str, str], None]
"""on_stage(stage, message): 'calibrate', 'estimate', 'train', 'recount', 'localize', 'done'."""
TrainCallback = Callable[[int, int, float], None]
"""on_train(step, total_steps, loss) after every training step."""
FrameCallback = Callable[[int, int], None]
"""on_localize(frames_done, frames_total)."""


@dataclass(frozen=True)
class TrainingEstimate:
    """How long the training budget takes on this device, from steps timed before it starts."""

    device: str
    seconds_per_step: float
    steps: int
    """Steps the budget will run (all of them, or as many as ``minutes`` allow)."""
    seconds: float
    """The whole training stage: the steps and the recounts."""
    limited_by: str
    """'steps' or 'minutes'."""
    recount_rounds: int = 0
    recount_s: float = 0.0
    """Seconds the recounts take (all rounds), included in ``seconds``."""

    def __str__(self) -> str:
        what = f"{self.steps} steps"
        if self.limited_by == "minutes":
            what += " (what the --minutes budget allows)"
        recount = ""
        if self.recount_rounds:
            recount = f" + {self.recount_rounds} density recount(s) ≈ {_duration(self.recount_s)}"
        return (
            f"training {what} on {self.device}: {self.seconds_per_step:.3g} s/step{recount}, "
            f"≈ {_duration(self.seconds)} (held-out evaluations and checkpoints add a little)"
        )


@dataclass
class FitResult:
    """What ``fit`` made: the setup, the model, the run directory, and how good the model is."""

    out: Path
    setup: Path
    model: Path
    run_dir: Path
    estimate: TrainingEstimate
    metrics: dict[str, float]
    """The trainer's final evaluation on its held-out simulated set: ``jaccard``,
    ``rmse_lat_nm``, ``efficiency_lat`` ..."""
    summary: dict[str, object]
    """The run directory's ``summary.json``."""
    init_from: str | None
    warnings: list[str] = field(default_factory=list)
    training_s: float = 0.0
    density: dict[str, Any] = field(default_factory=dict)
    """Calibrate's density estimate, each recount round (:class:`RecountRound` as a dict: the
    network's raw count, the corrected density, the range before and after), the final setup's."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "setup": str(self.setup),
            "model": str(self.model),
            "run_dir": str(self.run_dir),
            "estimate": asdict(self.estimate),
            "held_out_metrics": self.metrics,
            "init_from": self.init_from,
            "training_s": round(self.training_s, 1),
            "calibration_warnings": self.warnings,
            "density": self.density,
            "localizations": self.summary.get("localizations"),
        }


def _path(init: Path | str | None) -> Path | None:
    return None if init is None else Path(init)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "an unknown time"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in, section by section (nested mappings merge too)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def training_setup(setup: Path, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The calibrated setup's sections with ``overrides`` (e.g. ``{"training": {"crop_px":
    24}}``) merged in. Only the sections it states are kept: a ``postprocess`` section written
    out would replace the thresholds the model card carries."""
    data = yaml.safe_load(setup.read_text(encoding="utf-8")) or {}
    return _merge(data, overrides or {})


def default_init(cfg: Config) -> Path | None:
    """The bundled demo model when its network fits ``cfg`` (filters, temporal context, 2-D),
    else None (train from scratch)."""
    path = bundled_model_path()
    card = read_card(path)
    lo, hi = cfg.emitters.z_range_nm
    is_3d = cfg.psf.kind != "gaussian" or hi > lo
    fits = (
        card.filters == cfg.model.n_filters
        and card.temporal_context == cfg.model.temporal_context
        and card.parsed_scaling.is_3d == is_3d
    )
    return path if fits else None


def estimate_training(
    trainer: Trainer,
    total_steps: int,
    minutes: float | None,
    timed: int = TIMED_STEPS,
    extra_s: float = 0.0,
    rounds: int = 0,
) -> TrainingEstimate:
    """Run ``timed`` real training steps (they count: training goes on from there) and say how
    long the steps up to ``total_steps`` — or the ``minutes`` budget — take on the trainer's
    device, the timed ones included. ``extra_s``: the ``rounds`` recounts' seconds, added to
    the duration (and, under ``minutes``, taken from the steps' share)."""
    durations: list[float] = []
    budget = max(0, total_steps - trainer.step)
    for _ in range(min(timed, budget)):
        t0 = time.perf_counter()
        loss = trainer.train_step()
        dt = time.perf_counter() - t0
        trainer.elapsed_s += dt
        durations.append(dt)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss} at step {trainer.step}")
    per_step = (
        sum(durations[1:]) / len(durations[1:])
        if len(durations) > 1
        else (durations[0] if durations else math.nan)
    )
    steps, seconds, limited = budget, budget * per_step + extra_s, "steps"
    if minutes is not None and math.isfinite(per_step) and seconds > minutes * 60.0:
        allowed = max(0, int((minutes * 60.0 - extra_s) / per_step))
        steps, seconds, limited = allowed, minutes * 60.0, "minutes"
    return TrainingEstimate(str(trainer.device), per_step, steps, seconds, limited, rounds, extra_s)


def recount_seconds(trainer: Trainer, blocks: Sequence[Any], rounds: int) -> float:
    """Seconds ``rounds`` recounts take: counting the sampled frames and the count curve (timed
    on a few windows), and simulating the held-out sets of the trainer that goes on after."""
    if rounds == 0 or not blocks or not isinstance(trainer.net, DecodeNet):
        return 0.0
    frames = sum(len(b) for b in blocks)
    shape = (int(blocks[0].shape[1]), int(blocks[0].shape[2]))
    rng = trainer.cfg.training.density_range_per_um2
    one = estimate_recount_s(
        trainer.net, trainer.sim, trainer.scaling, trainer.postprocess, shape, frames, rng
    )
    t = trainer.cfg.training
    gen = torch.Generator(device=trainer.device).manual_seed(1)
    t0 = time.perf_counter()
    trainer.sim.sample(torch.full((4,), float(trainer.cfg.emitters.density_per_um2)), gen)
    held_out_s = (time.perf_counter() - t0) / 4 * t.eval_samples
    if t.structured.fraction > 0:
        held_out_s *= 2
    return rounds * (one + held_out_s)


def _write_training_config(
    setup: Path, overrides: Mapping[str, Any] | None, config_path: Path
) -> Config:
    """The setup with ``overrides``, parsed and written (atomically) to ``config_path``
    (model/config.yaml)."""
    data = training_setup(setup, overrides)
    cfg = config_from_dict(data, source=f"{setup}{' + --set' if overrides else ''}")
    write_text_atomic(
        config_path,
        f"# The setup `live-decode fit` trained for ({setup}{' + overrides' if overrides else ''})"
        "\n" + yaml.safe_dump(data, sort_keys=False),
    )
    return cfg


def _density_report(cal_dir: Path, rounds: Sequence[RecountRound], cfg: Config) -> dict[str, Any]:
    """Calibrate's density, each recount round, and the density and range trained for."""
    calibrated = None
    report = cal_dir / "calibration.json"
    if report.is_file():
        calibrated = (
            json.loads(report.read_text("utf-8")).get("density_per_um2", {}).get("corrected")
        )
    return {
        "calibrate_per_um2": calibrated,
        "recount": [r.to_dict() for r in rounds],
        "setup_per_um2": cfg.emitters.density_per_um2,
        "training_range_per_um2": list(cfg.training.density_range_per_um2),
    }


def fit(
    movies: Sequence[Path],
    out: Path,
    *,
    minutes: float | None = None,
    steps: int | None = None,
    device: str = "auto",
    init_from: Path | str | None = "default",
    pixel_size_nm: float | None = None,
    camera: str | None = None,
    dark: Path | None = None,
    qe: float | None = None,
    refine: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    overrides: Mapping[str, Any] | None = None,
    recount_rounds: int = 1,
    on_stage: StageCallback | None = None,
    on_train: TrainCallback | None = None,
    on_localize: FrameCallback | None = None,
) -> FitResult:
    """Calibrate ``movies``, train a model for that setup, localize them with it; see the module.

    ``init_from``: ``"default"`` fine-tunes the bundled demo model where its network fits the
    setup (else trains from scratch), None trains from scratch, a path fine-tunes that model.
    ``resume`` continues an interrupted fit in ``out`` (its setup is kept, not recalibrated; the
    training goes on from its checkpoint); ``overwrite`` starts afresh over an earlier one.
    ``refine=False`` skips calibrate's simulation-based correction of its spot estimators.
    ``overrides`` are merged into the calibrated setup before training (e.g. a smaller
    ``training.crop_px``); they are kept in ``OUT/model/config.yaml``. ``recount_rounds``: how
    often the network re-estimates the density during training (0: never), :mod:`.fit_recount`.
    """
    check_rounds(recount_rounds)
    say = on_stage or (lambda stage, message: None)
    out = Path(out)
    cal_dir, model_dir, run_dir = out / CALIBRATION_DIR, out / MODEL_DIR, out / RUN_DIR
    checkpoint = model_dir / "checkpoint.pt"
    if checkpoint.is_file() and not (resume or overwrite):
        raise LiveDecodeError(
            f"{out} holds an earlier fit ({checkpoint}): pass --resume to continue it, "
            "--overwrite to start afresh, or choose another --out"
        )
    if resume and not checkpoint.is_file():
        raise LiveDecodeError(f"nothing to resume in {out} (no {checkpoint}); start without it")

    if overrides:  # a typo fails now, not after the calibration
        demo = load_config(DEMO_CONFIG).model_dump(mode="json")
        config_from_dict(_merge(demo, overrides), source="the overrides (--set)")
    warnings: list[str] = []
    setup = cal_dir / "setup.yaml"
    if resume:
        say("calibrate", f"resuming: the setup of the first run, {setup}")
    else:
        say("calibrate", f"calibrating {', '.join(map(str, movies))} → {cal_dir}")
        result = calibrate(
            list(movies),
            cal_dir,
            pixel_size_nm=pixel_size_nm,
            camera=camera,
            dark=dark,
            qe=qe,
            refine=refine,
        )
        warnings = list(result.warnings)
        cam = result.camera
        say(
            "calibrate",
            f"{cam.kind}, {cam.adu_per_photon:.3g} ADU/photon, baseline {cam.baseline_adu:.1f} "
            f"ADU; PSF σ {sum(result.psf_sigma_nm) / 2:.0f} nm; "
            f"{result.sample.photons_mean:.0f} photons/frame; "
            f"{result.density_per_um2:.2f} emitters/µm²/frame",
        )
        for w in warnings:
            say("calibrate", f"warning: {w}")

    model_dir.mkdir(parents=True, exist_ok=True)
    config_path = model_dir / CONFIG_NAME
    # A round interrupted while it was being applied: its setup is (re)written, and the
    # checkpoint may still be the one of the setup before it.
    pending = read_pending(model_dir) if resume else None
    if pending is not None:
        rewrite_setup(setup, pending)
    cfg = _write_training_config(setup, overrides, config_path)
    init = default_init(cfg) if init_from == "default" else init_from
    if init_from == "default" and init is None:
        say("train", "the bundled model's network does not fit this setup: from scratch")
    if resume:  # the checkpoint holds the weights (and names the model they started from)
        trainer = Trainer(cfg, model_dir, device=device)
        trainer.load_checkpoint(None if pending is None else before_round(cfg, pending))
        say("train", f"resuming at step {trainer.step}")
    else:
        trainer = Trainer(cfg, model_dir, device=device, init_from=_path(init))
        say("train", f"fine-tuning from {init}" if trainer.init_from else "training from scratch")
    if not resume:  # an earlier fit's rounds are not this one's
        (model_dir / RECOUNT_NAME).unlink(missing_ok=True)
    rounds = read_rounds(model_dir) if resume else []
    if pending is not None:  # the checkpoint of its setup, then the round is done
        trainer.save_checkpoint()
        rounds.append(pending)
        write_rounds(model_dir, rounds)
        say("recount", f"finishing the round the interruption cut short: {pending.summary()}")
    to_do = max(0, recount_rounds - len(rounds))
    blocks = sample_blocks(movies) if to_do else []
    total = steps if steps is not None else cfg.training.steps
    started = time.perf_counter()
    first_step = trainer.step
    recount_s = recount_seconds(trainer, blocks, to_do)
    estimate = estimate_training(trainer, total, minutes, extra_s=recount_s, rounds=to_do)
    say("estimate", str(estimate))

    def progress(step: int, loss: float, _: dict[str, float] | None) -> None:
        if on_train is not None:
            on_train(step, total, loss)

    deadline = None if minutes is None else started + minutes * 60.0
    per_round_s = recount_s / to_do if to_do else 0.0

    def left_s(rounds_left: int) -> float | None:
        """Training seconds left, the recounts still to come kept aside."""
        if deadline is None:
            return None
        return max(0.0, deadline - time.perf_counter() - rounds_left * per_round_s)

    ends = stage_ends(first_step + estimate.steps, recount_rounds)
    fixed = {
        "density": "density_per_um2" in (overrides or {}).get("emitters", {}),
        "range": "density_range_per_um2" in (overrides or {}).get("training", {}),
    }
    for k, end in enumerate(ends, start=1):
        if k <= len(rounds):
            continue  # done before the interruption
        if trainer.step < end:
            trainer.run(end, left_s(recount_rounds - k + 1), progress, search_thresholds=False)
        say("recount", f"the network counts the movie (round {k} of {recount_rounds})")
        done = recount_round(trainer, blocks, k, fixed)
        say("recount", done.summary())
        if done.changed:  # pending until the checkpoint of the new setup is saved (resumable)
            # The old setup's checkpoint at this step (the timed steps may have passed the
            # round's end without one): a resumed fit goes on from here, whatever it finds.
            trainer.save_checkpoint()
            write_rounds(model_dir, rounds, pending=done)
            rewrite_setup(setup, done)
            cfg = _write_training_config(setup, overrides, config_path)
            trainer = continue_training(trainer, cfg)
        rounds.append(done)
        write_rounds(model_dir, rounds)
    metrics = trainer.run(total, left_s(0), progress)
    training_s = time.perf_counter() - started
    model = model_dir / f"{trainer.name}.pt"
    if rounds:  # the card says how the density it was trained for was found
        card = replace(trainer.card(), density_recount=[r.to_dict() for r in rounds])
        save_model(model, trainer.net, card)
    say(
        "train",
        f"{trainer.step} steps in {_duration(trainer.elapsed_s)}; held-out set: Jaccard "
        f"{metrics.get('jaccard', math.nan):.3f}, lateral RMSE "
        f"{metrics.get('rmse_lat_nm', math.nan):.1f} nm → {model}",
    )

    say("localize", f"localizing with the new model → {run_dir}")
    summary = localize_files(
        list(movies),
        run_dir,
        config=config_path,
        model=model,
        device=device,
        overwrite=resume or overwrite,
        progress=on_localize,
        # The camera the model was trained for, not the file's own numbers (calibrate
        # measured them; the card check's photon test verifies them on the first frame).
        prefer_file_metadata=False,
    )
    fitted = FitResult(
        out=out,
        setup=config_path,
        model=model,
        run_dir=run_dir,
        estimate=estimate,
        metrics=metrics,
        summary=summary,
        init_from=trainer.init_from,
        warnings=warnings,
        training_s=training_s,
        density=_density_report(cal_dir, rounds, trainer.cfg),
    )
    write_json(out / FIT_NAME, fitted.to_dict())
    say("done", f"{summary.get('localizations')} localizations in {run_dir}")
    return fitted
