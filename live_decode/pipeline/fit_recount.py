"""``fit``'s density recount: after a short training, the network counts the movie and the setup's
density and training range follow what it finds (:mod:`live_decode.training.recount`).

A round: frames sampled from the movie are localized with the network in training; its count is
corrected with the count curve of the same network on simulated windows of the setup; where the
corrected density is well above the setup's in a movie dense enough for calibrate's spot count to
undercount (:func:`recounted_density`), or the densest frames reach the edge of the training
range, ``OUT/calibration/setup.yaml`` is rewritten and training goes on from the same weights,
optimiser and step (:func:`continue_training`) with the new setup. The rounds done are kept in
``OUT/model/recount.json`` so a resumed fit does not repeat them.

An interruption never leaves the files disagreeing: a round that changes the setup is first
written to recount.json as *pending*, then setup.yaml and model/config.yaml are replaced
(atomically), then the checkpoint of the new setup is saved, and only then is the round recorded
as done. A resumed fit finishes a pending round (:func:`read_pending`): it rewrites the setup if
that had not happened yet, and takes the checkpoint of the setup before the round
(:func:`before_round`) as well as the one after.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from live_decode.config import Config
from live_decode.errors import LiveDecodeError
from live_decode.io.movie import TiffMovie
from live_decode.model.network import DecodeNet
from live_decode.strict_json import write_json
from live_decode.training.recount import (
    CountCurve,
    corrected_densities,
    count_curve,
    count_frames,
    curve_densities,
    curve_shape,
    curve_top,
    unreliable_count,
    widened_range,
)
from live_decode.training.trainer import Trainer

log = logging.getLogger("live_decode.pipeline.fit_recount")

RECOUNT_NAME = "recount.json"
SAMPLE_FRAMES = 200
"""Movie frames the network counts per round (all of a shorter movie; fewer of large frames)."""
SAMPLE_PIXELS = 20_000_000
"""Fewer frames of large ones: at most this many pixels (at least 3 frames a block)."""
SAMPLE_BLOCKS = 4
"""The sample is this many runs of consecutive frames spread over the movie (temporal context)."""
STAGE_FRACTION = 0.25
"""Round k comes after k × 25 % of the steps the budget allows."""
MAX_ROUNDS = 3
DENSITY_TOLERANCE = 0.15
"""The setup's density is replaced when the corrected one exceeds it by more than 15 % ..."""
DENSE_PER_UM2 = 1.5
"""... and is at least this: below it calibrate's spot count (corrected by simulation) does not
undercount, and the network's corrected count, early in training, is the noisier of the two (a
0.81 µm⁻² movie: calibrate right, the network 0.97 after 150 steps)."""


@dataclass(frozen=True)
class RecountRound:
    """One recount: what the network counted, the corrected density, the setup before and after."""

    round: int
    step: int
    frames: int
    raw_per_um2: float
    """The network's localizations per µm² per frame (mean over the sampled frames)."""
    raw_p95_per_um2: float
    corrected_per_um2: float
    corrected_p95_per_um2: float
    corrected_p5_per_um2: float
    density_before: float
    density_after: float
    range_before: tuple[float, float]
    range_after: tuple[float, float]
    curve: CountCurve
    seconds: float
    kept: tuple[str, ...] = ()
    """Setup keys the recount would have changed but ``--set`` fixes."""
    unreliable: str | None = None
    """Why the count could not be corrected (the setup is then left as it was)."""

    @property
    def widened(self) -> bool:
        return tuple(self.range_after) != tuple(self.range_before)

    @property
    def changed(self) -> bool:
        return self.widened or self.density_after != self.density_before

    def summary(self) -> str:
        if self.unreliable is not None:
            return (
                f"round {self.round} at step {self.step}: the network counts "
                f"{self.raw_per_um2:.2f} emitters/µm²/frame on {self.frames} frames, but "
                f"{self.unreliable}: the setup is kept (density {self.density_before:.2f} µm⁻², "
                f"training range {_span(self.range_before)} µm⁻²)"
            )
        rng = (
            f"training range {_span(self.range_before)} → {_span(self.range_after)} µm⁻²"
            if self.widened
            else f"training range {_span(self.range_before)} µm⁻² covers it"
        )
        return (
            f"round {self.round} at step {self.step}: the network counts "
            f"{self.raw_per_um2:.2f} emitters/µm²/frame on {self.frames} frames; corrected for "
            f"its held-out count (recall {_mid(self.curve.recall):.2f}, precision "
            f"{_mid(self.curve.precision):.2f}) {self.corrected_per_um2:.2f} µm⁻² (95th pct "
            f"{self.corrected_p95_per_um2:.2f}); setup density {self.density_before:.2f} → "
            f"{self.density_after:.2f}{self._density_note()}; {rng}"
            + (f" (kept by --set: {', '.join(self.kept)})" if self.kept else "")
        )

    def _density_note(self) -> str:
        if self.kept or self.density_after != self.density_before:
            return ""
        reason = recounted_density(self.density_before, self.corrected_per_um2)[1]
        return "" if reason is None else f" ({reason})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "step": self.step,
            "frames": self.frames,
            "raw_per_um2": round(self.raw_per_um2, 4),
            "raw_p95_per_um2": round(self.raw_p95_per_um2, 4),
            "corrected_per_um2": round(self.corrected_per_um2, 4),
            "corrected_p95_per_um2": round(self.corrected_p95_per_um2, 4),
            "corrected_p5_per_um2": round(self.corrected_p5_per_um2, 4),
            "density_before": self.density_before,
            "density_after": self.density_after,
            "range_before": list(self.range_before),
            "range_after": list(self.range_after),
            "widened": self.widened,
            "count_curve": self.curve.to_dict(),
            "seconds": round(self.seconds, 2),
            "kept": list(self.kept),
            "unreliable": self.unreliable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecountRound:
        c = data["count_curve"]
        curve = CountCurve(
            *(
                np.asarray(c[k], dtype=np.float64)
                for k in ("true_per_um2", "counted_per_um2", "recall", "precision")
            )
        )
        return cls(
            round=int(data["round"]),
            step=int(data["step"]),
            frames=int(data["frames"]),
            raw_per_um2=float(data["raw_per_um2"]),
            raw_p95_per_um2=float(data["raw_p95_per_um2"]),
            corrected_per_um2=float(data["corrected_per_um2"]),
            corrected_p95_per_um2=float(data["corrected_p95_per_um2"]),
            corrected_p5_per_um2=float(data["corrected_p5_per_um2"]),
            density_before=float(data["density_before"]),
            density_after=float(data["density_after"]),
            range_before=(float(data["range_before"][0]), float(data["range_before"][1])),
            range_after=(float(data["range_after"][0]), float(data["range_after"][1])),
            curve=curve,
            seconds=float(data["seconds"]),
            kept=tuple(data.get("kept", ())),
            unreliable=data.get("unreliable"),
        )


def _span(r: tuple[float, float]) -> str:
    return f"{r[0]:g}–{r[1]:g}"


def _mid(values: npt.NDArray[np.float64]) -> float:
    """The middle point of the curve (its typical density), NaN-safe."""
    finite = values[np.isfinite(values)]
    return float(finite[len(finite) // 2]) if len(finite) else math.nan


def recounted_density(density_per_um2: float, corrected_per_um2: float) -> tuple[float, str | None]:
    """The setup's density after a recount, and why the setup's is kept if it is.

    The recount is there for the spot count's undercount of dense movies, so the corrected
    count replaces the setup's density only when it is more than :data:`DENSITY_TOLERANCE`
    above it and at least :data:`DENSE_PER_UM2`; a sparse movie, or a network counting fewer
    than calibrate, keeps calibrate's (the training range still follows the count). Returns
    ``(density, None)`` when replaced or within the tolerance, else ``(setup's, reason)``.
    """
    if abs(corrected_per_um2 - density_per_um2) <= DENSITY_TOLERANCE * max(density_per_um2, 1e-6):
        return density_per_um2, None
    if corrected_per_um2 < density_per_um2:
        return density_per_um2, (
            "fewer than calibrate counted: the setup's density is kept (the recount corrects a "
            "spot count's undercount only)"
        )
    if corrected_per_um2 < DENSE_PER_UM2:
        return density_per_um2, (
            f"below {DENSE_PER_UM2:g} µm⁻² calibrate's spot count is trusted: the setup's "
            "density is kept"
        )
    return round(corrected_per_um2, 3), None


def stage_ends(plan_steps: int, rounds: int) -> list[int]:
    """The step after which each recount round comes (``plan_steps``: what the budget allows)."""
    return [max(1, round(plan_steps * STAGE_FRACTION * k)) for k in range(1, rounds + 1)]


def check_rounds(rounds: int) -> None:
    if not 0 <= rounds <= MAX_ROUNDS:
        raise LiveDecodeError(
            f"--recount-rounds {rounds}: give 0 (no recount) to {MAX_ROUNDS}; each round comes "
            f"after another {STAGE_FRACTION:.0%} of the training"
        )


def sample_blocks(
    movies: Sequence[Path], frames: int = SAMPLE_FRAMES, blocks: int = SAMPLE_BLOCKS
) -> list[npt.NDArray[Any]]:
    """Up to ``frames`` frames of the movies (one series, in order) as ``blocks`` runs of
    consecutive (T, H, W) ADU frames spread evenly over the series (each within one file)."""
    opened = [TiffMovie(Path(p)) for p in movies]
    try:
        lengths = [len(m) for m in opened]
        h, w = opened[0].shape[1:]
        frames = min(frames, max(3 * blocks, SAMPLE_PIXELS // (h * w)))
        total = sum(lengths)
        per_block = max(1, min(total, frames) // blocks)
        n_blocks = 1 if total <= frames else blocks
        per_block = total if n_blocks == 1 else per_block
        starts = np.linspace(0, total - per_block, n_blocks).round().astype(int)
        offsets = np.cumsum([0, *lengths])
        out = []
        for start in starts:
            i = int(np.searchsorted(offsets, start, side="right") - 1)
            local = int(start - offsets[i])
            stop = min(local + per_block, lengths[i])  # a block does not cross files
            out.append(np.stack([opened[i].frame(j) for j in range(local, stop)]))
        return out
    finally:
        for m in opened:
            m.close()


def recount_round(
    trainer: Trainer,
    blocks: Sequence[npt.NDArray[Any]],
    round_index: int,
    fixed: Mapping[str, bool] | None = None,
) -> RecountRound:
    """Count the movie with the trainer's network, correct the count, propose the new setup.

    ``fixed``: ``{"density": True}`` / ``{"range": True}`` where ``--set`` gave the setup's
    ``emitters.density_per_um2`` / ``training.density_range_per_um2`` (they are then kept).
    """
    t0 = time.perf_counter()
    net = trainer.net
    if not isinstance(net, DecodeNet):
        raise LiveDecodeError(f"the recount needs a DECODE network, not {type(net).__name__}")
    cfg, post, scaling = trainer.cfg, trainer.postprocess, trainer.scaling
    raw = np.concatenate([count_frames(net, b, trainer.sim, scaling, post) for b in blocks])
    rng = (
        float(cfg.training.density_range_per_um2[0]),
        float(cfg.training.density_range_per_um2[1]),
    )
    raw_p95 = float(np.percentile(raw, 95))
    densities = curve_densities(curve_top(rng, raw_p95))
    shape = curve_shape((int(blocks[0].shape[1]), int(blocks[0].shape[2])))
    curve = count_curve(net, cfg, scaling, post, densities, shape, trainer.device, trainer.sim)
    corrected = corrected_densities(raw, curve)
    mean, p95, p5 = (float(v) for v in (corrected.mean(), *np.percentile(corrected, [95, 5])))
    density = float(cfg.emitters.density_per_um2)
    unreliable = unreliable_count(float(raw.mean()), curve, density)
    new_density, new_range = density, rng
    if unreliable is None:
        new_density = recounted_density(density, mean)[0]
        new_range = widened_range(rng, p95, p5)
    fixed = fixed or {}
    kept = []
    if fixed.get("density") and new_density != density:
        kept.append("emitters.density_per_um2")
        new_density = density
    if fixed.get("range") and new_range != rng:
        kept.append("training.density_range_per_um2")
        new_range = rng
    return RecountRound(
        round=round_index,
        step=trainer.step,
        frames=len(raw),
        raw_per_um2=float(raw.mean()),
        raw_p95_per_um2=raw_p95,
        corrected_per_um2=mean,
        corrected_p95_per_um2=p95,
        corrected_p5_per_um2=p5,
        density_before=density,
        density_after=new_density,
        range_before=rng,
        range_after=new_range,
        curve=curve,
        seconds=time.perf_counter() - t0,
        kept=tuple(kept),
        unreliable=unreliable,
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``<path>.tmp`` and :func:`os.replace`: an interruption
    leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def rewrite_setup(setup: Path, done: RecountRound) -> None:
    """``setup.yaml`` with the recount's density and training range (its header kept, a line
    saying what changed added once: rewriting it again for the same round changes nothing)."""
    text = setup.read_text(encoding="utf-8")
    header = [line for line in text.splitlines() if line.startswith("#")]
    data = yaml.safe_load(text) or {}
    data.setdefault("emitters", {})["density_per_um2"] = done.density_after
    data.setdefault("training", {})["density_range_per_um2"] = list(done.range_after)
    line = (
        f"# `live-decode fit` recount round {done.round} (step {done.step}): density "
        f"{done.density_before:g} → {done.density_after:g} µm⁻², training range "
        f"{_span(done.range_before)} → {_span(done.range_after)} µm⁻² (counted by the network, "
        "corrected for its held-out undercount; see model/recount.json)"
    )
    if line not in header:
        header.append(line)
    write_text_atomic(setup, "\n".join(header) + "\n" + yaml.safe_dump(data, sort_keys=False))


def before_round(cfg: Config, pending: RecountRound) -> Config:
    """``cfg`` (the setup after ``pending``) with the density and training range it had before:
    the config a checkpoint saved before the round's own was trained with."""
    emitters = cfg.emitters.model_copy(update={"density_per_um2": pending.density_before})
    training = cfg.training.model_copy(
        update={"density_range_per_um2": tuple(pending.range_before)}
    )
    return cfg.model_copy(update={"emitters": emitters, "training": training})


def continue_training(trainer: Trainer, cfg: Config) -> Trainer:
    """A trainer for ``cfg`` that goes on where ``trainer`` is: its weights, optimiser, learning
    rate schedule, random stream, step and history (its held-out set is simulated anew, at
    ``cfg``'s density). Its checkpoint is written at once: a resumed fit finds the new setup's."""
    nxt = Trainer(
        cfg,
        trainer.out_dir,
        device=str(trainer.device),
        name=trainer.name,
        temporal_context=trainer.temporal_context,
    )
    nxt.net.load_state_dict(trainer.net.state_dict())
    nxt.opt.load_state_dict(trainer.opt.state_dict())
    nxt.sched.load_state_dict(trainer.sched.state_dict())
    nxt.gen.set_state(trainer.gen.get_state())
    nxt.step, nxt.elapsed_s, nxt.times = trainer.step, trainer.elapsed_s, trainer.times
    nxt.history = list(trainer.history)
    nxt.init_from = trainer.init_from
    nxt.save_checkpoint()
    return nxt


def _read(model_dir: Path) -> dict[str, Any]:
    path = model_dir / RECOUNT_NAME
    return json.loads(path.read_text("utf-8")) if path.is_file() else {"rounds": []}


def read_rounds(model_dir: Path) -> list[RecountRound]:
    """The rounds an earlier (interrupted) fit in ``model_dir`` finished."""
    return [RecountRound.from_dict(r) for r in _read(model_dir)["rounds"]]


def read_pending(model_dir: Path) -> RecountRound | None:
    """The round an earlier fit in ``model_dir`` was applying when it was interrupted (its setup
    maybe rewritten, the checkpoint of the new setup maybe not saved), or None."""
    pending = _read(model_dir).get("pending")
    return None if pending is None else RecountRound.from_dict(pending)


def write_rounds(
    model_dir: Path, rounds: Sequence[RecountRound], pending: RecountRound | None = None
) -> Path:
    """``recount.json`` (atomically): the rounds done and the one being applied, if any."""
    return write_json(
        model_dir / RECOUNT_NAME,
        {
            "rounds": [r.to_dict() for r in rounds],
            "pending": None if pending is None else pending.to_dict(),
        },
    )
