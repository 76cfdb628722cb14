"""Wake phase of autoencoder learning: fit the simulator's generative parameters to real frames.

The network's confident localizations (p ≥ ``min_prob``) of real frames are the latent code; the
differentiable forward model (:mod:`live_decode.simulation.forward`: pixel-integrated PSF +
smooth background + camera noise) renders them back into frames, and the PSF parameters are
fitted by maximising the likelihood of the real frames under the camera noise model.

The network inferred its positions and photons under the setup's (possibly wrong) PSF, and
photons trade off against PSF width: both are refined with the PSF (jointly, by Adam). First the
emitters and background are fitted with the setup's PSF fixed — the likelihood *before* is the
best the setup's PSF can do with these emitters — then the PSF is released (*after*).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from live_decode.config import Config
from live_decode.errors import CalibrationError
from live_decode.messages import CameraMeta, Localizations
from live_decode.simulation.forward import (
    BackgroundGrid,
    CameraNoise,
    FittablePSF,
    PixelLikelihood,
    PsfShape,
    WindowRenderer,
)

log = logging.getLogger("live_decode.calibration.wake")

MIN_EMITTERS = 20


@dataclass(frozen=True)
class WakeOptions:
    """How the wake phase fits (defaults: ~100 frames of 64² px in seconds on one CPU core)."""

    min_prob: float = 0.5
    """Only localizations at least this probable are rendered."""
    max_frames: int = 100
    """Frames fitted at most (evenly spaced through the movie)."""
    bg_nodes: int = 4
    """Background grid nodes per side and frame (bicubic in between)."""
    psf_shape: PsfShape | None = None
    """round | elliptical | astigmatic; None: as the setup's PSF is (round for a round Gaussian)."""
    refine_emitters: bool = True
    """Refine positions and photons with the PSF (they were inferred under the setup's PSF)."""
    steps_fixed: int = 150
    """Adam steps of emitters + background with the setup's PSF (the likelihood before); as many
    as with the PSF released, so the gain is the PSF's, not a longer fit's."""
    steps_joint: int = 150
    """Adam steps with the PSF released."""
    lr: float = 0.03


@dataclass
class WakeResult:
    """What the wake phase fitted, and the likelihood before and after."""

    config: Config
    """The setup with the fitted PSF and background levels."""
    psf_before: dict[str, float]
    psf_after: dict[str, float]
    loglik_before_per_px: float
    loglik_after_per_px: float
    chi2_before_per_px: float
    chi2_after_per_px: float
    background: dict[str, float]
    photons: dict[str, float]
    n_frames: int
    n_emitters: int
    frames: list[int]
    images: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    """One frame for the report: ``real`` photons, ``model_before``/``model_after`` (expected
    photons), ``residual_before``/``residual_after`` ((ADU − mean)/√var), (H, W) each."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "psf_before": self.psf_before,
            "psf": self.psf_after,
            "loglik_before_per_px": self.loglik_before_per_px,
            "loglik_after_per_px": self.loglik_after_per_px,
            "loglik_gain_per_px": self.loglik_after_per_px - self.loglik_before_per_px,
            "chi2_before_per_px": self.chi2_before_per_px,
            "chi2_after_per_px": self.chi2_after_per_px,
            "background": self.background,
            "photons": self.photons,
            "n_frames": self.n_frames,
            "n_emitters": self.n_emitters,
        }


class _Problem:
    """The tensors of one fit: frames, emitters (fitted), background (fitted), PSF (fitted)."""

    def __init__(
        self, movie: npt.NDArray[Any], locs: Localizations, cfg: Config, opts: WakeOptions
    ) -> None:
        n = int(movie.shape[0])
        self.frames = np.unique(np.linspace(0, n - 1, min(n, opts.max_frames)).round().astype(int))
        adu = torch.as_tensor(np.asarray(movie[self.frames], np.float32))
        self.adu = adu
        self.shape = (int(adu.shape[1]), int(adu.shape[2]))
        self.noise = CameraNoise(cfg.camera)
        self.likelihood = PixelLikelihood(self.noise, adu)  # leaves saturated pixels out
        self.mask = self.likelihood.weight > 0
        px = cfg.camera.pixel_size_nm
        position = {int(f): i for i, f in enumerate(self.frames)}
        keep = (locs["prob"] >= opts.min_prob) & np.isin(locs["frame"], self.frames)
        rows = locs[keep]
        if len(rows) < MIN_EMITTERS:
            raise CalibrationError(
                f"only {len(rows)} localizations with p ≥ {opts.min_prob:g} in the "
                f"{len(self.frames)} frames fitted (need {MIN_EMITTERS}): give a longer movie, a "
                "lower --min-prob, or a model that detects emitters in this movie"
            )
        self.image = torch.as_tensor([position[int(f)] for f in rows["frame"]], dtype=torch.long)
        f64 = torch.float32
        self.x = torch.as_tensor(rows["x_nm"] / px, dtype=f64).requires_grad_(opts.refine_emitters)
        self.y = torch.as_tensor(rows["y_nm"] / px, dtype=f64).requires_grad_(opts.refine_emitters)
        self.z = torch.as_tensor(rows["z_nm"], dtype=f64)
        self.network_photons = np.asarray(rows["photons"], np.float64)
        self.log_photons = (
            torch.as_tensor(np.clip(self.network_photons, 1.0, None), dtype=f64)
            .log()
            .requires_grad_(opts.refine_emitters)
        )
        self.psf = FittablePSF.from_config(cfg.psf, px, opts.psf_shape, dtype=f64)
        if self.psf.shape == "astigmatic" and opts.refine_emitters:
            self.z.requires_grad_()
        with torch.no_grad():
            k = cfg.psf.roi_px | 1  # odd, so the window is centred on the start pixel
            self.render = WindowRenderer(
                self.x, self.y, self.image, len(self.frames), self.shape, k
            )
        camera = CameraMeta.from_camera(cfg.camera)
        self.photons_img = camera.adu_to_photons(adu)
        with torch.no_grad():
            first = self.photons_img - self.signal()
        self.bg = BackgroundGrid(first.clamp(min=0.1), opts.bg_nodes, self.shape)

    def emitter_tensors(self) -> list[Tensor]:
        return [t for t in (self.x, self.y, self.z, self.log_photons) if t.requires_grad]

    def signal(self) -> Tensor:
        return self.render(self.psf, self.x, self.y, self.z, self.log_photons.exp())

    def expected(self) -> Tensor:
        return self.signal() + self.bg.field()

    def loglik_per_px(self) -> Tensor:
        return self.likelihood(self.expected())

    def chi2_per_px(self) -> float:
        with torch.no_grad():
            return float(self.noise.chi2(self.adu, self.expected())[self.mask].mean())

    def snapshot(self, frame: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(expected photons, normalised residual) of one fitted frame."""
        with torch.no_grad():
            mu = self.expected()[frame]
            res = self.noise.normalised_residual(self.adu[frame], mu)
        return mu.numpy(), res.numpy()


def _adam(tensors: list[Tensor], loss_fn: Any, steps: int, lr: float) -> None:
    """Minimise ``loss_fn()`` over ``tensors``: Adam, cosine-decayed to 1 % of ``lr``."""
    if steps <= 0 or not tensors:
        return
    opt = torch.optim.Adam(tensors, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.01)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        sched.step()


def wake(
    movie: npt.NDArray[Any], locs: Localizations, cfg: Config, options: WakeOptions | None = None
) -> WakeResult:
    """Fit the PSF (and background) of ``cfg`` to ``movie`` (T, H, W) ADU given its ``locs``.

    Raises
    ------
    CalibrationError
        Too few confident localizations in the fitted frames.
    LiveDecodeError
        A PSF kind that cannot be fitted (spline) or a shape the setup cannot take.
    """
    opts = options or WakeOptions()
    prob = _Problem(movie, locs, cfg, opts)
    px = cfg.camera.pixel_size_nm
    before = prob.psf.values_nm(px)

    def loss() -> Tensor:
        return -prob.loglik_per_px()

    _adam([*prob.emitter_tensors(), prob.bg.log_level], loss, opts.steps_fixed, opts.lr)
    with torch.no_grad():
        ll_before = float(prob.loglik_per_px())
    chi2_before = prob.chi2_per_px()
    show = int(np.argmax(np.bincount(prob.image.numpy(), minlength=len(prob.frames))))
    model_before, res_before = prob.snapshot(show)
    _adam(
        [*prob.emitter_tensors(), prob.bg.log_level, *prob.psf.tensors()],
        loss,
        opts.steps_joint,
        opts.lr,
    )
    with torch.no_grad():
        ll_after = float(prob.loglik_per_px())
        bg = prob.bg.field()
    chi2_after = prob.chi2_per_px()
    model_after, res_after = prob.snapshot(show)
    after = prob.psf.values_nm(px)
    refined = prob.log_photons.detach().exp().numpy()
    levels = bg.mean(dim=(1, 2)).numpy()
    rel = (bg / bg.mean(dim=(1, 2), keepdim=True)).numpy()
    lo, hi = (float(v) for v in np.percentile(levels, [5, 95]))
    background = {
        "level_p5": lo,
        "level_p95": hi,
        "level_median": float(np.median(levels)),
        "variation_fraction": float(np.median(rel.max(axis=(1, 2)) - 1.0)),
    }
    photons = {
        "network_median": float(np.median(prob.network_photons)),
        "refined_median": float(np.median(refined)),
        "refined_over_network": float(np.sum(refined) / max(np.sum(prob.network_photons), 1e-9)),
    }
    lo_bg, hi_bg = round(lo, 1), round(max(hi, lo + 0.1), 1)
    new_cfg = cfg.model_copy(
        update={
            "psf": prob.psf.to_config(cfg.psf, px),
            "background": cfg.background.model_copy(update={"uniform_photons": (lo_bg, hi_bg)}),
        }
    )
    log.info(
        "wake: %d emitters in %d frames; σ %.1f → %.1f nm; log-likelihood/px %.4f → %.4f",
        len(prob.image),
        len(prob.frames),
        before["sigma_nm"],
        after["sigma_nm"],
        ll_before,
        ll_after,
    )
    if not math.isfinite(ll_after):
        raise CalibrationError("the wake fit diverged (non-finite likelihood); check the camera")
    return WakeResult(
        config=new_cfg,
        psf_before=before,
        psf_after=after,
        loglik_before_per_px=ll_before,
        loglik_after_per_px=ll_after,
        chi2_before_per_px=chi2_before,
        chi2_after_per_px=chi2_after,
        background=background,
        photons=photons,
        n_frames=len(prob.frames),
        n_emitters=len(prob.image),
        frames=[int(f) for f in prob.frames],
        images={
            "real": prob.photons_img[show].numpy(),
            "model_before": model_before,
            "model_after": model_after,
            "residual_before": res_before,
            "residual_after": res_after,
        },
    )
