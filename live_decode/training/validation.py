"""The fixed held-out simulated set and its evaluation during training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from live_decode.config import Config, PostprocessConfig, StructuredSamplesConfig
from live_decode.evaluation.metrics import compute_metrics
from live_decode.messages import TRUTH_DTYPE
from live_decode.model.loss import gmm_loss
from live_decode.model.network import DecodeNet
from live_decode.model.postprocess import localize
from live_decode.model.scaling import Scaling
from live_decode.simulation.batch import WindowBatch, WindowSimulator
from live_decode.training.targets import make_targets

GT_DTYPE = TRUTH_DTYPE  # the ground truth of the held-out set is the simulator's table


@dataclass(frozen=True)
class HeldOutSet:
    """Windows simulated once with a fixed seed at the config's nominal density."""

    batch: WindowBatch

    @classmethod
    def simulate(
        cls,
        sim: WindowSimulator,
        n: int,
        density_per_um2: float,
        generator: torch.Generator,
        structured: StructuredSamplesConfig | None = None,
    ) -> HeldOutSet:
        d = torch.full((n,), density_per_um2, device=sim.device)
        return cls(sim.sample(d, generator, structured))

    def ground_truth(self, pixel_size_nm: float) -> np.ndarray:
        """Centre-frame emitters as a structured array; ``frame`` is the window index."""
        em = self.batch.emitters
        t = self.batch.n_frames
        em = em.select(em.frame % t == t // 2)
        gt = np.zeros(len(em), dtype=GT_DTYPE)
        xyz = em.xyz.cpu().numpy()
        gt["frame"] = (em.frame // t).cpu().numpy()
        gt["id"] = em.id.cpu().numpy()
        gt["x_nm"] = xyz[:, 0] * pixel_size_nm
        gt["y_nm"] = xyz[:, 1] * pixel_size_nm
        gt["z_nm"] = xyz[:, 2]
        gt["photons"] = em.photons.cpu().numpy()
        return gt


@torch.no_grad()
def predict_windows(net: DecodeNet, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Network outputs (B, 10, H, W) for scaled inputs (B, 3, H, W), in eval mode."""
    net.eval()
    outs = [net(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return torch.cat(outs)


def evaluate_held_out(
    net: DecodeNet,
    held_out: HeldOutSet,
    cfg: Config,
    scaling: Scaling,
    sim: WindowSimulator,
    postprocess: PostprocessConfig | None = None,
) -> dict[str, float]:
    """Held-out loss and localization metrics (Jaccard, RMSE, efficiency) at the nominal density.

    Detection thresholds: ``postprocess``, default ``cfg.postprocess``.
    """
    b = held_out.batch
    x = scaling.scale_input(sim.camera.to_photons(b.adu))
    out = predict_windows(net, x)
    t = cfg.training
    targets = make_targets(
        b.emitters, b.background, 3, scaling, t.min_target_photons, t.max_targets
    )
    loss = float(gmm_loss(out, targets, n_dims=4 if scaling.is_3d else 3).mean())
    px = cfg.camera.pixel_size_nm
    post = cfg.postprocess if postprocess is None else postprocess
    locs = localize(out, torch.arange(out.shape[0]), post, scaling, px)
    gt = held_out.ground_truth(px)
    metrics: dict[str, float] = {"loss": loss, "n_pred": len(locs), "n_true": len(gt)}
    metrics.update(score(locs, gt, is_3d=scaling.is_3d))
    return metrics


def score(locs: np.ndarray, gt: np.ndarray, *, is_3d: bool = True) -> dict[str, float]:
    """Jaccard, RMSE and efficiency of ``locs`` against ``gt`` (greedy matching, 250/500 nm).

    Counts stay integers; for 2-D (``is_3d=False``) the axial figures are NaN (n/a).
    """
    metrics = compute_metrics(locs, gt, is_3d=is_3d).to_dict()
    return {k: v if isinstance(v, int) else float(v) for k, v in metrics.items()}
