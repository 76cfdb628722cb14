"""``adapt.png``: likelihood per round, PSF before/after, residuals real − forward model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from live_decode.calibration.wake import WakeResult

RESIDUAL_RANGE_SD = 4.0


def _profile(x_nm: np.ndarray, sigma_nm: float) -> np.ndarray:
    return np.exp(-0.5 * (x_nm / sigma_nm) ** 2)


def plot_adaptation(path: Path, wakes: list[WakeResult]) -> Path:
    """Six panels: log-likelihood/px per round (before/after each wake), PSF profiles along x and
    y before and after, one real frame, the forward model before, and the normalised residuals
    (ADU − mean)/√var before and after the fit, on the same ±4 SD scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 3, figsize=(13, 8))
    rounds = np.arange(1, len(wakes) + 1)
    a = ax[0, 0]
    a.plot(rounds, [w.loglik_before_per_px for w in wakes], "o--", label="before wake")
    a.plot(rounds, [w.loglik_after_per_px for w in wakes], "o-", label="after wake")
    a.set(xlabel="round", ylabel="log-likelihood / px", title="likelihood of the real frames")
    a.set_xticks(rounds)
    a.legend()
    a = ax[0, 1]
    first, last = wakes[0].psf_before, wakes[-1].psf_after
    half = 4.0 * max(
        first["sigma_x_nm"], first["sigma_y_nm"], last["sigma_x_nm"], last["sigma_y_nm"]
    )
    x = np.linspace(-half, half, 201)
    for axis, style in (("x", "-"), ("y", ":")):
        key = f"sigma_{axis}_nm"
        a.plot(
            x,
            _profile(x, first[key]),
            style,
            color="C0",
            label=f"{axis} before σ {first[key]:.0f} nm",
        )
        a.plot(
            x, _profile(x, last[key]), style, color="C3", label=f"{axis} after σ {last[key]:.0f} nm"
        )
    a.set(xlabel="nm", ylabel="PSF (peak 1)", title="PSF profiles (in focus)")
    a.legend(fontsize=8)
    images = wakes[-1].images
    im = ax[0, 2].imshow(images["real"], cmap="gray")
    ax[0, 2].set_title("real frame (photons)")
    fig.colorbar(im, ax=ax[0, 2], shrink=0.8)
    im = ax[1, 0].imshow(images["model_after"], cmap="gray")
    ax[1, 0].set_title("forward model after (photons)")
    fig.colorbar(im, ax=ax[1, 0], shrink=0.8)
    r = RESIDUAL_RANGE_SD
    first_images = wakes[0].images
    for a, key, title in (
        (ax[1, 1], "residual_before", "residual before (round 1)"),
        (ax[1, 2], "residual_after", "residual after"),
    ):
        source = first_images if key == "residual_before" else images
        im = a.imshow(source[key], cmap="RdBu_r", vmin=-r, vmax=r)
        a.set_title(f"{title}, (real − model)/SD")
        fig.colorbar(im, ax=a, shrink=0.8)
    for a in (ax[0, 2], ax[1, 0], ax[1, 1], ax[1, 2]):
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
