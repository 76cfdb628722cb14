"""Training Deep-STORM on the simulator: single frames, blurred-spike L2 + L1 sparsity loss.

The same loop as DECODE's (:class:`live_decode.training.trainer.Trainer`: on-the-fly simulation,
AdamW, clipping, step LR decay, checkpoints, held-out evaluation); what differs is one frame per
sample, the target (the frame's emitters as spikes on the super-resolution grid) and the loss
(:func:`live_decode.model.deepstorm.deepstorm_loss`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

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
from live_decode.training.trainer import Trainer
from live_decode.training.validation import score


class DeepStormTrainer(Trainer):
    """Trains :class:`DeepStormNet` for ``cfg`` (``model.kind: deepstorm``)."""

    n_frames = 1

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

    def run(
        self,
        max_steps: int,
        time_budget_s: float | None = None,
        on_progress: Callable[[int, float, dict[str, float] | None], None] | None = None,
        search_thresholds: bool = False,
    ) -> dict[str, float]:
        """As DECODE's, without the threshold search (Deep-STORM's is model.deepstorm.threshold)."""
        return super().run(max_steps, time_budget_s, on_progress, search_thresholds=False)

    @torch.no_grad()
    def held_out_metrics(self) -> dict[str, float]:
        """Held-out loss, NMSE of the density images and Jaccard/RMSE of the localizations."""
        assert isinstance(self.net, DeepStormNet)
        ds = self.cfg.model.deepstorm
        b = self.held_out.batch
        x = self._inputs(b)
        self.net.eval()
        out = torch.cat([self.net(x[i : i + 32]) for i in range(0, x.shape[0], 32)])
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
