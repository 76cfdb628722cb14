"""Training Deep-STORM on the simulator: single frames, blurred-spike L2 + L1 sparsity loss.

The same loop as DECODE's (:class:`live_decode.training.trainer.Trainer`: on-the-fly simulation,
AdamW, clipping, step LR decay, checkpoints, held-out evaluation); what differs is one frame per
sample, the target (the frame's emitters as spikes on the super-resolution grid) and the loss
(:func:`live_decode.model.deepstorm.deepstorm_loss`). At the end the detection threshold
(``model.deepstorm.threshold``) is chosen on simulated validation frames of the setup
(:mod:`.deepstorm_thresholds`) and written into the model card with the search behind it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from live_decode.config import Config
from live_decode.errors import ConfigError
from live_decode.evaluation.images import nmse
from live_decode.model.deepstorm import (
    SIZE_MULTIPLE,
    DeepStormNet,
    blur,
    build_deepstorm,
    deepstorm_loss,
    spike_image,
)
from live_decode.model.deepstorm_post import localize_density
from live_decode.simulation.batch import WindowBatch
from live_decode.training.deepstorm_thresholds import (
    DeepStormThresholdChoice,
    choose_deepstorm_threshold,
    predict_density,
)
from live_decode.training.thresholds import DetectionChoice, check_given_threshold
from live_decode.training.trainer import Trainer
from live_decode.training.validation import score

log = logging.getLogger("live_decode.training.deepstorm")


class DeepStormTrainer(Trainer):
    """Trains :class:`DeepStormNet` for ``cfg`` (``model.kind: deepstorm``)."""

    n_frames = 1

    def __init__(
        self,
        cfg: Config,
        out_dir: Path,
        device: str = "auto",
        name: str = "model",
        threshold: float | None = None,
    ) -> None:
        """``threshold``: use this ``model.deepstorm.threshold`` instead of choosing one."""
        check_given_threshold(
            "--threshold",
            threshold,
            "Deep-STORM's detection threshold is a fraction of one emitter's spike",
        )
        super().__init__(cfg, out_dir, device, name, temporal_context=False)
        self.given_threshold = threshold
        ds = cfg.model.deepstorm
        self.deepstorm = ds if threshold is None else ds.model_copy(update={"threshold": threshold})

    def make_network(self, cfg: Config, temporal_context: bool) -> nn.Module:
        u = cfg.model.deepstorm.upsampling
        if (cfg.training.crop_px * u) % SIZE_MULTIPLE:
            raise ConfigError(
                f"training.crop_px {cfg.training.crop_px} × model.deepstorm.upsampling {u} must "
                f"be a multiple of {SIZE_MULTIPLE} (three 2× poolings); choose another crop_px"
            )
        return build_deepstorm(cfg.model.deepstorm)

    def spikes(self, batch: WindowBatch) -> torch.Tensor:
        """The emitters of each frame as spikes (B, 1, H·u, W·u) (dim ones are not targets)."""
        ds = self.cfg.model.deepstorm
        em = batch.emitters
        em = em.select(em.photons >= self.cfg.training.min_target_photons)
        return spike_image(
            em.xyz[:, :2],
            em.frame,
            batch.adu.shape[0],
            self.sim.shape_px,
            ds.upsampling,
            ds.spike_height,
        )

    def train_step(self) -> float:
        t = self.cfg.training
        t0 = time.perf_counter()
        batch = self.sim.sample_uniform(t.batch_size, t.density_range_per_um2, self.gen)
        x = self._inputs(batch)
        spikes = self.spikes(batch)
        out, t1 = self._forward(x)
        loss = deepstorm_loss(out, spikes, self.cfg.model.deepstorm).mean()
        return self._update(loss, t0, t1)

    # ------------------------------------------------------------------ the threshold
    def choose_threshold(
        self, density_per_um2: float | None = None, n_windows: int | None = None
    ) -> DeepStormThresholdChoice:
        """Choose ``model.deepstorm.threshold`` for the network as it is now (later cards carry
        it), on ``n_windows`` validation windows (default: ``training.eval_samples``) at
        ``density_per_um2`` (default: the config's); see
        :func:`.deepstorm_thresholds.choose_deepstorm_threshold`. A given threshold is kept."""
        assert isinstance(self.net, DeepStormNet)
        choice = choose_deepstorm_threshold(
            self.net,
            self.cfg,
            self.scaling,
            density_per_um2=density_per_um2,
            n_windows=n_windows,
            threshold=self.given_threshold,
            sim=self.sim,
        )
        chosen = replace(choice, step=self.step)
        self.thresholds = chosen
        self.deepstorm = self.deepstorm.model_copy(update={"threshold": choice.threshold})
        log.info("%s", choice.summary())
        return chosen

    def choose_detection(
        self, density_per_um2: float | None = None, n_windows: int | None = None
    ) -> DetectionChoice:
        return self.choose_threshold(density_per_um2, n_windows)

    def _detection_state(self) -> dict[str, Any]:
        return {
            "deepstorm_threshold": self.deepstorm.threshold,
            "thresholds": None if self.thresholds is None else self.thresholds.to_dict(),
        }

    def _restore_detection(self, state: dict[str, Any]) -> None:
        saved = float(state["deepstorm_threshold"])
        threshold = saved if self.given_threshold is None else self.given_threshold
        self.deepstorm = self.deepstorm.model_copy(update={"threshold": threshold})
        self.thresholds = DeepStormThresholdChoice.from_dict(state["thresholds"])

    def card_config(self) -> Config:
        """The training's config with the threshold in use as ``model.deepstorm.threshold``."""
        model = self.cfg.model.model_copy(update={"deepstorm": self.deepstorm})
        return self.cfg.model_copy(update={"model": model})

    @torch.no_grad()
    def held_out_metrics(self) -> dict[str, float]:
        """Held-out loss, NMSE of the density images and Jaccard/RMSE of the localizations."""
        assert isinstance(self.net, DeepStormNet)
        ds = self.deepstorm
        b = self.held_out.batch
        out = predict_density(self.net, self._inputs(b))
        spikes = self.spikes(b)
        loss = float(deepstorm_loss(out, spikes, ds).mean())
        px = self.cfg.camera.pixel_size_nm
        locs = localize_density(out, torch.arange(out.shape[0]), ds, px)
        gt = self.held_out.ground_truth(px)
        metrics: dict[str, float] = {"loss": loss, "n_pred": len(locs), "n_true": len(gt)}
        metrics.update(score(locs, gt, is_3d=False))
        est = blur(out.clamp(min=0), ds.blur_sigma_px)[:, 0].cpu().numpy()
        ref = blur(spikes, ds.blur_sigma_px)[:, 0].cpu().numpy()
        metrics["nmse"] = nmse(est.astype(np.float64), ref.astype(np.float64))
        return metrics
