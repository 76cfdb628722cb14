"""How long training will take, and what it is doing: the up-front estimate and ``train_log.jsonl``.

The estimate times the first steps of a run (real training steps, not extra ones; the very first
is left out when there are enough, it carries one-time costs such as memory allocation and kernel
selection) and extrapolates to the step budget and, with a time budget, to the steps it reaches.
Evaluations and checkpoints come on top; the ETA of the progress lines, measured on the wall
clock, includes them.

The log has one JSON object per line (strict JSON: ``null`` for NaN), appended and flushed line by
line so it can be followed while training runs (``tail -f``) and survives a crash; a resumed run
appends to it. Every line has ``kind`` and ``step``; kinds: ``start``, ``estimate``, ``progress``
(every ``training.log_every`` steps and at least every :data:`LOG_EVERY_S` seconds), ``eval``,
``thresholds``, ``end``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from live_decode import strict_json

LOG_NAME = "train_log.jsonl"
LOG_EVERY_S = 30.0
"""A progress line at least this often (seconds), however slow the steps."""
ESTIMATE_STEPS = 6
"""Steps timed for the estimate (the first of them only warms up when there are 3 or more)."""


@dataclass(frozen=True)
class Estimate:
    """Projected training time from the timed first steps of a run.

    Attributes
    ----------
    steps_per_s
        Training steps per second measured (simulation + network + optimiser).
    samples_per_s
        ``steps_per_s`` × batch size.
    device
        Where training runs.
    start_step, max_steps
        The step the run started at, and the step budget.
    steps_eta_s
        Seconds for the run's steps (``max_steps - step``), training steps only.
    time_budget_s, steps_in_budget
        The wall-time budget of the run (None: none) and the step it is expected to reach.
    """

    steps_per_s: float
    samples_per_s: float
    device: str
    start_step: int
    max_steps: int
    steps_eta_s: float
    time_budget_s: float | None
    steps_in_budget: int | None

    @classmethod
    def from_timing(
        cls,
        step_s: list[float],
        batch_size: int,
        device: str,
        step: int,
        max_steps: int,
        time_budget_s: float | None,
    ) -> Estimate:
        """From the durations (s) of the timed first steps of a run that started at ``step``."""
        timed = step_s[1:] if len(step_s) >= 3 else step_s
        sps = len(timed) / max(sum(timed), 1e-9)
        remaining = max(max_steps - step, 0)
        in_budget = None
        if time_budget_s is not None:
            in_budget = min(max_steps, step + int(sps * time_budget_s))
        return cls(
            steps_per_s=sps,
            samples_per_s=sps * batch_size,
            device=device,
            start_step=step,
            max_steps=max_steps,
            steps_eta_s=remaining / sps,
            time_budget_s=time_budget_s,
            steps_in_budget=in_budget,
        )

    def message(self) -> str:
        """E.g. ``estimated 12.3 min for 20000 steps on cuda (27.1 steps/s, 868 samples/s)``."""
        steps = self.max_steps - self.start_step
        text = (
            f"estimated {self.steps_eta_s / 60:.1f} min for {steps} steps "
            f"on {self.device} ({self.steps_per_s:.3g} steps/s, {self.samples_per_s:.0f} "
            "samples/s; evaluations add to it)"
        )
        if self.time_budget_s is not None and self.steps_in_budget is not None:
            text += (
                f"; the {self.time_budget_s / 60:g} min budget reaches step "
                f"{self.steps_in_budget} of {self.max_steps}"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message()}


class TrainLog:
    """Appends JSON lines to ``<out>/train_log.jsonl``; each line is flushed as it is written."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / LOG_NAME

    def write(self, kind: str, step: int, **fields: Any) -> None:
        record = {"kind": kind, "step": step, "time": _now(), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(strict_json.dumps(record) + "\n")


class ProgressMeter:
    """Running mean loss and throughput between progress lines; the ETA of the run."""

    def __init__(self, step: int, max_steps: int, batch_size: int) -> None:
        self.start = time.perf_counter()
        self.start_step = step
        self.max_steps = max_steps
        self.batch_size = batch_size
        self._since = self.start
        self._loss_sum = 0.0
        self._n = 0

    def add(self, loss: float) -> None:
        self._loss_sum += loss
        self._n += 1

    def due(self, step: int, every: int) -> bool:
        """A progress line is due: every ``every`` steps, or :data:`LOG_EVERY_S` since the last."""
        waited = time.perf_counter() - self._since
        return self._n > 0 and (step % every == 0 or waited >= LOG_EVERY_S)

    def line(self, step: int, time_budget_s: float | None) -> dict[str, float | None]:
        """The fields of a progress line; starts the next interval."""
        now = time.perf_counter()
        interval = max(now - self._since, 1e-9)
        wall = now - self.start
        per_step = wall / max(step - self.start_step, 1)
        eta = (self.max_steps - step) * per_step
        if time_budget_s is not None:
            eta = min(eta, max(time_budget_s - wall, 0.0))
        fields: dict[str, float | None] = {
            "loss": self._loss_sum / self._n if self._n else None,
            "samples_per_s": self._n * self.batch_size / interval,
            "wall_s": wall,
            "eta_s": eta,
        }
        self._since, self._loss_sum, self._n = now, 0.0, 0
        return fields


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
