"""Simulation-based training of the DECODE network (each simulated sample is used once).

One step: simulate a batch of 3-frame windows on the training device → ADU to photons with the
camera's inverse map (exactly what inference does to real frames) → network → DECODE loss →
AdamW with gradient-norm clipping; the learning rate decays stepwise. A fixed held-out simulated
set is evaluated periodically; checkpoints allow resuming; the run stops on a step or time budget.
At the end the detection thresholds are chosen on simulated validation windows of the setup
(:mod:`.thresholds`) and written into the model card with the search behind them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from live_decode.config import Config, PostprocessConfig
from live_decode.errors import LiveDecodeError
from live_decode.model.checkpoint import ModelCard, make_card, save_model
from live_decode.model.device import resolve_device
from live_decode.model.loss import gmm_loss
from live_decode.model.network import DecodeNet
from live_decode.model.scaling import Scaling
from live_decode.simulation.batch import WindowBatch, WindowSimulator
from live_decode.training.progress import ESTIMATE_STEPS, Estimate, ProgressMeter, TrainLog
from live_decode.training.targets import make_targets
from live_decode.training.thresholds import (
    DetectionChoice,
    ThresholdChoice,
    check_given_threshold,
    choose_thresholds,
)
from live_decode.training.validation import HeldOutSet, evaluate_held_out

log = logging.getLogger("live_decode.training")

EVAL_SEED_OFFSET = 10_007
# What a resumed run must share with its checkpoint: the simulated data, the network and how it is
# trained. Budgets and reporting intervals (training.steps, eval_every ...) may change on resume.
RESUME_SECTIONS = ("camera", "psf", "emitters", "photophysics", "background", "model", "training")
STRUCTURED_METRICS = ("loss", "jaccard", "rmse_lat_nm", "efficiency_lat", "efficiency_vol")
RESUME_FREE_TRAINING_KEYS = (
    "steps",
    "time_budget_s",
    "eval_every",
    "checkpoint_every",
    "log_every",
)


@dataclass
class StepTimes:
    """Wall time split of the training steps, seconds."""

    simulate_s: float = 0.0
    total_s: float = 0.0

    @property
    def simulate_share(self) -> float:
        return self.simulate_s / self.total_s if self.total_s > 0 else math.nan


class Trainer:
    """Trains one network for one config. ``run`` may be called again after ``load``."""

    def __init__(
        self,
        cfg: Config,
        out_dir: Path,
        device: str = "auto",
        name: str = "model",
        temporal_context: bool | None = None,
        init_from: Path | None = None,
        raw_threshold: float | None = None,
        split_threshold: float | None = None,
    ) -> None:
        """``raw_threshold`` / ``split_threshold``: use these instead of choosing them."""
        for flag, value in (("raw", raw_threshold), ("split", split_threshold)):
            check_given_threshold(
                f"--{flag}-threshold", value, "a detection threshold is a probability"
            )
        self.cfg = cfg
        self.out_dir = out_dir
        self.name = name
        self.device = resolve_device(device)
        tc = cfg.model.temporal_context if temporal_context is None else temporal_context
        self.scaling = Scaling.from_config(cfg)
        with torch.random.fork_rng(devices=[]):  # the seed fixes the initial weights too
            torch.manual_seed(cfg.training.seed)
            net = self.make_network(cfg, tc)
        self.init_from: str | None = None
        if init_from is not None:
            self.init_from = _initialise_from(net, init_from)
        self.net = net.to(self.device)
        t = cfg.training
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.sched = torch.optim.lr_scheduler.StepLR(self.opt, t.lr_step_every, t.lr_gamma)
        crop = (t.crop_px, t.crop_px)
        self.sim = WindowSimulator(cfg, crop, n_frames=self.n_frames, device=self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(t.seed)
        self.temporal_context = tc
        self.step = 0
        self.elapsed_s = 0.0
        self.times = StepTimes()
        self.history: list[dict[str, float]] = []
        self.given_thresholds = (raw_threshold, split_threshold)
        self.postprocess = self._with_given(cfg.postprocess)
        self.thresholds: DetectionChoice | None = None  # set by the threshold choice
        self.estimate: Estimate | None = None
        self.train_log = TrainLog(out_dir)
        eval_gen = torch.Generator(device=self.device).manual_seed(t.seed + EVAL_SEED_OFFSET)
        self.held_out = HeldOutSet.simulate(
            self.sim, t.eval_samples, cfg.emitters.density_per_um2, eval_gen
        )
        # Training on structured windows: also a held-out set of structured windows only (same
        # density), whose metrics come as structured_* (how the network does where it is crowded)
        self.held_out_structured: HeldOutSet | None = None
        if t.structured.fraction > 0:
            only = t.structured.model_copy(update={"fraction": 1.0})
            self.held_out_structured = HeldOutSet.simulate(
                self.sim, t.eval_samples, cfg.emitters.density_per_um2, eval_gen, only
            )

    n_frames = 3  # frames simulated per sample (t-1, t, t+1)

    def make_network(self, cfg: Config, temporal_context: bool) -> nn.Module:
        """The untrained network (called with the training seed set)."""
        return DecodeNet(cfg.model.n_filters, temporal_context, predict_z=self.scaling.is_3d)

    # ------------------------------------------------------------------ one step
    def _inputs(self, batch: WindowBatch) -> torch.Tensor:
        return self.scaling.scale_input(self.sim.camera.to_photons(batch.adu))

    def train_step(self) -> float:
        t = self.cfg.training
        t0 = time.perf_counter()
        batch = self.sim.sample_uniform(
            t.batch_size, t.density_range_per_um2, self.gen, t.structured
        )
        targets = make_targets(
            batch.emitters, batch.background, 3, self.scaling, t.min_target_photons, t.max_targets
        )
        out, t1 = self._forward(self._inputs(batch))
        loss = gmm_loss(out, targets, n_dims=4 if self.scaling.is_3d else 3).mean()
        return self._update(loss, t0, t1)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """The network's float output on ``x`` in training mode (bf16 autocast on CUDA when
        ``training.amp``), and the time the batch was ready (the end of simulation)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        self.net.train()
        use_amp = self.cfg.training.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = self.net(x)
        return out.float(), t1

    def _update(self, loss: torch.Tensor, t0: float, t1: float) -> float:
        """Backward, clipped AdamW step and LR schedule; ``t0``, ``t1``: step start, data ready."""
        t = self.cfg.training
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), t.grad_clip_norm)
        self.opt.step()
        self.sched.step()
        value = float(loss.detach())
        t2 = time.perf_counter()
        self.times.simulate_s += t1 - t0
        self.times.total_s += t2 - t0
        self.step += 1
        return value

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        metrics = self.held_out_metrics()
        metrics["step"] = self.step
        self.history.append(metrics)
        return metrics

    def held_out_metrics(self) -> dict[str, float]:
        """Loss, Jaccard, RMSE ... of the network on the held-out set."""
        assert isinstance(self.net, DecodeNet)
        args = (self.cfg, self.scaling, self.sim, self.postprocess)
        metrics = evaluate_held_out(self.net, self.held_out, *args)
        if self.held_out_structured is not None:
            crowded = evaluate_held_out(self.net, self.held_out_structured, *args)
            metrics.update({f"structured_{k}": crowded[k] for k in STRUCTURED_METRICS})
        return metrics

    # ------------------------------------------------------------------ thresholds
    def choose_thresholds(
        self, density_per_um2: float | None = None, n_windows: int | None = None
    ) -> ThresholdChoice:
        """Choose the detection thresholds for the network as it is now; later cards carry them.

        Searches the pair not given to the constructor on validation windows of the setup at
        ``density_per_um2`` (default: the config's), ``n_windows`` of them (default:
        ``training.eval_samples``); see :func:`.thresholds.choose_thresholds`.
        """
        if not isinstance(self.net, DecodeNet):
            raise LiveDecodeError(f"threshold search is DECODE's, not {type(self.net).__name__}'s")
        raw, split = self.given_thresholds
        choice = choose_thresholds(
            self.net,
            self.cfg,
            self.scaling,
            density_per_um2=density_per_um2,
            n_windows=n_windows,
            raw_threshold=raw,
            split_threshold=split,
            sim=self.sim,
        )
        chosen = replace(choice, step=self.step)
        self.thresholds = chosen
        self.postprocess = choice.postprocess
        log.info("%s", choice.summary())
        return chosen

    def choose_detection(
        self, density_per_um2: float | None = None, n_windows: int | None = None
    ) -> DetectionChoice:
        """The kind's threshold choice after training (DECODE's: :meth:`choose_thresholds`)."""
        return self.choose_thresholds(density_per_um2, n_windows)

    def _with_given(self, post: PostprocessConfig) -> PostprocessConfig:
        raw, split = self.given_thresholds
        return PostprocessConfig(
            raw_threshold=post.raw_threshold if raw is None else raw,
            split_threshold=post.split_threshold if split is None else split,
        )

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "net": self.net.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "gen": self.gen.get_state(),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "history": self.history,
            "times": (self.times.simulate_s, self.times.total_s),
            "resume_config": _resume_view(self.cfg),
            "temporal_context": self.temporal_context,
            "init_from": self.init_from,
            **self._detection_state(),
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def load_checkpoint(self, earlier: Config | None = None) -> None:
        """Continue from ``checkpoint.pt``; refuses one made for other data or another network.

        ``earlier``: a config the checkpoint may have been trained with instead of this
        trainer's (``fit``'s density recount, interrupted after it rewrote the setup but before
        the checkpoint of the new one was saved); its state then goes on under this config.

        Raises
        ------
        LiveDecodeError
            No checkpoint, or it was trained with a different simulation/model/training config
            (the differing keys are named) or with(out) temporal context.
        """
        path = self.checkpoint_path
        if not path.is_file():
            raise LiveDecodeError(f"No checkpoint to resume at {path}; start without --resume.")
        state = torch.load(path, map_location=self.device, weights_only=False)
        saved_tc = state.get("temporal_context", self.temporal_context)
        if saved_tc != self.temporal_context:
            raise LiveDecodeError(
                f"{path} was trained with temporal_context={saved_tc}, this run has "
                f"{self.temporal_context}: resume it the way it was started (--single-frame or "
                "not), or train into another --out directory."
            )
        if "resume_config" in state:  # checkpoints of before 2026-11-22 have none
            saved = state["resume_config"]
            changed = _differences(saved, _resume_view(self.cfg))
            if changed and earlier is not None and not _differences(saved, _resume_view(earlier)):
                changed = []  # trained for ``earlier``: it goes on under this trainer's config
            if changed:
                raise LiveDecodeError(
                    f"{path} was trained with a different config: {', '.join(changed)}. Resume "
                    "with the config it was started with, or train into another --out directory."
                )
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        self.gen.set_state(state["gen"])
        self.step = int(state["step"])
        self.elapsed_s = float(state["elapsed_s"])
        self.history = list(state["history"])
        self.times = StepTimes(*state["times"])
        self.init_from = state.get("init_from", self.init_from)
        if state.get("thresholds") is not None:  # chosen before; given values still win
            self._restore_detection(state)

    # The detection settings in use: how they are saved, restored and written into the card.
    # DECODE's are ``postprocess``; another kind's trainer overrides these three.
    def _detection_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the detection settings and their choice."""
        return {
            "postprocess": self.postprocess.model_dump(),
            "thresholds": None if self.thresholds is None else self.thresholds.to_dict(),
        }

    def _restore_detection(self, state: dict[str, Any]) -> None:
        """Take the settings chosen before from a checkpoint's state (given values win)."""
        self.postprocess = self._with_given(PostprocessConfig(**state["postprocess"]))
        self.thresholds = _threshold_choice(state["thresholds"])

    def card_config(self) -> Config:
        """The config the card carries: the training's, with the detection settings in use."""
        return self.cfg.model_copy(update={"postprocess": self.postprocess})

    def card(self) -> ModelCard:
        """The card: config with the thresholds in use (``card_config``), and how they were set."""
        last = self.history[-1] if self.history else {}
        return make_card(
            self.name,
            self.card_config(),
            self.net,
            training_steps=self.step,
            training_time_s=round(self.elapsed_s, 1),
            device=str(self.device),
            metrics={k: round(v, 4) for k, v in last.items()},
            init_from=self.init_from,
            thresholds=None if self.thresholds is None else self.thresholds.to_dict(),
        )

    def save_model(self) -> Path:
        path = self.out_dir / f"{self.name}.pt"
        save_model(path, self.net, self.card())
        return path

    # ------------------------------------------------------------------ loop
    def run(
        self,
        max_steps: int,
        time_budget_s: float | None = None,
        on_progress: Callable[[int, float, dict[str, float] | None], None] | None = None,
        search_thresholds: bool = True,
    ) -> dict[str, float]:
        """Train until ``max_steps`` total steps or ``time_budget_s`` more seconds; evaluate.

        The first steps are timed for :attr:`estimate` (logged, and in ``train_log.jsonl`` with
        the progress lines, see :mod:`.progress`). At the end (unless ``search_thresholds`` is
        False) the detection thresholds are chosen (:meth:`choose_detection`); the final
        evaluation and the saved card use them.
        """
        t = self.cfg.training
        start = time.perf_counter()
        first_step = self.step
        meter = ProgressMeter(self.step, max_steps, t.batch_size)
        self.train_log.write(
            "start",
            self.step,
            max_steps=max_steps,
            time_budget_s=time_budget_s,
            device=str(self.device),
            batch_size=t.batch_size,
        )
        self.estimate = None
        n_timed = min(ESTIMATE_STEPS, max(max_steps - self.step, 0))
        step_s: list[float] = []
        last_eval: dict[str, float] | None = None
        reason = "step budget"
        while self.step < max_steps:
            if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                log.info("time budget of %.0f s reached at step %d", time_budget_s, self.step)
                reason = "time budget"
                break
            t0 = time.perf_counter()
            loss = self.train_step()
            dt = time.perf_counter() - t0
            self.elapsed_s += dt
            if not math.isfinite(loss):
                self.train_log.write("end", self.step, reason=f"loss became {loss}")
                raise FloatingPointError(f"training loss became {loss} at step {self.step}")
            meter.add(loss)
            if len(step_s) < n_timed:
                step_s.append(dt)
                if len(step_s) == n_timed:
                    self._estimate(step_s, first_step, max_steps, time_budget_s)
            if meter.due(self.step, t.log_every):
                lr = self.sched.get_last_lr()[0]
                line = meter.line(self.step, time_budget_s)
                self.train_log.write("progress", self.step, **line, elapsed_s=self.elapsed_s, lr=lr)
            last_eval = None
            if self.step % t.eval_every == 0:
                last_eval = self.evaluate()
                self.train_log.write("eval", self.step, **_without_step(last_eval))
                log.info(
                    "step %d: %s",
                    self.step,
                    ", ".join(f"{k}={v:.4g}" for k, v in last_eval.items()),
                )
            if self.step % t.checkpoint_every == 0:
                self.save_checkpoint()
                path = self.save_model()
                snap = self.out_dir / "snapshots" / f"{self.name}_{self.step:06d}.pt"
                snap.parent.mkdir(exist_ok=True)
                snap.write_bytes(path.read_bytes())
            if on_progress is not None:
                on_progress(self.step, loss, last_eval)
        if search_thresholds:
            c = self.choose_detection()
            self.train_log.write("thresholds", self.step, **c.brief())
        final = self.evaluate()
        self.train_log.write("eval", self.step, final=True, **_without_step(final))
        self.save_checkpoint()
        self.save_model()
        wall = time.perf_counter() - start
        self.train_log.write("end", self.step, reason=reason, elapsed_s=self.elapsed_s, wall_s=wall)
        return final

    def _estimate(
        self, step_s: list[float], first_step: int, max_steps: int, budget_s: float | None
    ) -> None:
        t = self.cfg.training
        est = Estimate.from_timing(
            step_s, t.batch_size, str(self.device), first_step, max_steps, budget_s
        )
        self.estimate = est
        log.info("%s", est.message())
        self.train_log.write("estimate", self.step, **est.to_dict())


def _initialise_from(net: nn.Module, path: Path) -> str:
    """Copy a trained model's weights into ``net`` (fine-tuning); returns that model's name.

    The architecture must match (filters, temporal context, 2-D/3-D); the camera, PSF and
    scaling may differ: fine-tuning is how a model made for one setup is adapted to another.
    """
    from live_decode.model.checkpoint import load_model

    if not isinstance(net, DecodeNet):
        raise LiveDecodeError(
            f"--init-from: fine-tuning a {type(net).__name__} is not supported; train from scratch"
        )
    src, card = load_model(path)
    mismatch = [
        f"{what}: {a} (init model) vs {b} (this config)"
        for what, a, b in (
            ("filters", src.filters, net.filters),
            ("temporal_context", src.temporal_context, net.temporal_context),
            ("3-D", src.predict_z, net.predict_z),
        )
        if a != b
    ]
    if mismatch:
        raise LiveDecodeError(
            f"--init-from {path}: its network differs from this config's ({'; '.join(mismatch)}). "
            "Set model.size / temporal context / z range to match it, or train from scratch."
        )
    net.load_state_dict(src.state_dict())
    log.info("initialised from %s (%s)", path, card.summary())
    return card.name


def _without_step(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k != "step"}


def _threshold_choice(data: dict[str, Any]) -> ThresholdChoice:
    """A :class:`ThresholdChoice` from its ``to_dict`` (a checkpoint's)."""
    data = {**data, "default": tuple(data["default"]), "given": tuple(data["given"])}
    return ThresholdChoice(**data)


def _resume_view(cfg: Config) -> dict[str, Any]:
    """The parts of ``cfg`` a resumed run must share with its checkpoint (JSON-able)."""
    view = {k: v for k, v in cfg.model_dump(mode="json").items() if k in RESUME_SECTIONS}
    for key in RESUME_FREE_TRAINING_KEYS:
        view["training"].pop(key, None)
    return view


def _differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """Key paths whose values differ, e.g. ``['camera.em_gain: 300 → 100']``."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out: list[str] = []
        for key in sorted(set(saved) | set(current)):
            path = f"{prefix}.{key}" if prefix else str(key)
            out += _differences(saved.get(key), current.get(key), path)
        return out
    return [] if saved == current else [f"{prefix}: {saved!r} → {current!r}"]
