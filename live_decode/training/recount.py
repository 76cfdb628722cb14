"""The emitter density of a movie counted by the network in training, corrected for its undercount.

A spot detector undercounts a dense movie (overlapping spots merge or are rejected), so the density
``calibrate`` reads off it — and the training density range set from it — can fall short of what
the movie shows. After a short training the network counts the movie instead; what it still misses
(or adds) is measured on simulated windows of the setup at known densities: the **count curve**
(counted vs true emitters per µm², with the recall and precision behind it). Inverting that curve
turns the network's raw count into a corrected density (:func:`correct_count`), and
:func:`widened_range` says how far the training range must then reach.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from live_decode.config import Config, PostprocessConfig, area_um2
from live_decode.model.network import DecodeNet, pad_to_multiple
from live_decode.model.postprocess import localize
from live_decode.model.scaling import Scaling
from live_decode.simulation.batch import WindowSimulator
from live_decode.training.validation import HeldOutSet, score

FloatArray = npt.NDArray[np.float64]

CURVE_FRACTIONS = (0.05, 0.125, 0.25, 0.4, 0.6, 0.8, 1.0)
"""Densities of the count curve, as fractions of its top (:func:`curve_top`)."""
CURVE_EMITTERS = 400
"""True emitters simulated per density of the curve (fewer windows where it is dense)."""
CURVE_WINDOWS = (4, 48)
"""Fewest and most simulated windows per density."""
CURVE_CROP_PX = 64
"""Side of the simulated windows at most (the movie's frame where it is smaller)."""
CURVE_SEED = 20_011
RANGE_MARGIN = 1.5
"""The training range reaches 1.5× the densest frames (95th percentile), as calibrate sets it."""
EDGE_FRACTION = 0.8
"""The range is widened when the densest frames reach 80 % of its top (or pass it)."""
CHUNK_WINDOWS = 16


@dataclass(frozen=True)
class CountCurve:
    """The network's count on simulated windows of the setup at known densities.

    Attributes
    ----------
    true_per_um2 : (n,)
        Emitters per µm² in the simulated windows (centre frames), ascending.
    counted_per_um2 : (n,)
        Localizations per µm² the network gave there (true positives + false positives).
    recall, precision : (n,)
        Matched share of the true emitters, and of the localizations (250 nm matching).
    """

    true_per_um2: FloatArray
    counted_per_um2: FloatArray
    recall: FloatArray
    precision: FloatArray

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "true_per_um2": _rounded(self.true_per_um2),
            "counted_per_um2": _rounded(self.counted_per_um2),
            "recall": _rounded(self.recall),
            "precision": _rounded(self.precision),
        }


def _rounded(values: FloatArray) -> list[float]:
    return [round(float(v), 4) for v in values]


def correct_count(raw_per_um2: float, curve: CountCurve) -> float:
    """The true density at which the network counts ``raw_per_um2``: the count curve inverted.

    The curve is made monotone first (a count that drops with density, as a saturating detector's
    may, keeps its highest value), then interpolated. Below its first density the count scales
    with the density (the first point's counted/true ratio); beyond its last the last segment is
    extrapolated, and where the count no longer grows there the ratio counted/true of the last
    point is used (a lower bound of the undercount, so the estimate errs low, not off to infinity).

    Parameters
    ----------
    raw_per_um2
        The network's localizations per µm² per frame on the movie.
    curve
        :func:`count_curve` of the same network with the same detection thresholds.

    Returns
    -------
    float
        Emitters per µm² per frame; 0 for a count of 0.
    """
    if raw_per_um2 <= 0.0:
        return 0.0
    order = np.argsort(curve.true_per_um2)
    t = np.asarray(curve.true_per_um2, dtype=np.float64)[order]
    c = np.maximum.accumulate(np.asarray(curve.counted_per_um2, dtype=np.float64)[order])
    if len(t) == 0 or c[-1] <= 0.0:
        return float(raw_per_um2)  # a curve without counts says nothing: keep the raw count
    if raw_per_um2 <= c[0]:
        return float(raw_per_um2 * t[0] / c[0]) if c[0] > 0 else float(t[0])
    if raw_per_um2 <= c[-1]:
        # np.interp needs strictly increasing x: where the envelope is flat keep its first point
        keep = np.concatenate([[True], np.diff(c) > 0])
        return float(np.interp(raw_per_um2, c[keep], t[keep]))
    slope = (c[-1] - c[-2]) / (t[-1] - t[-2]) if len(t) > 1 and t[-1] > t[-2] else 0.0
    if slope > 0.05 * c[-1] / t[-1]:
        return float(t[-1] + (raw_per_um2 - c[-1]) / slope)
    return float(raw_per_um2 * t[-1] / c[-1])


def count_peak(curve: CountCurve) -> tuple[float, float] | None:
    """(true, counted) per µm² where the network's count peaks, when it falls beyond that point
    (by more than 10 % of the peak): an undertrained network that misses most emitters of a
    dense frame. None for a count that keeps growing (or levels off) with the density."""
    order = np.argsort(curve.true_per_um2)
    t, c = curve.true_per_um2[order], curve.counted_per_um2[order]
    if len(c) == 0:
        return None
    i = int(np.argmax(c))
    if np.any(c[i + 1 :] < 0.9 * c[i]):
        return float(t[i]), float(c[i])
    return None


def unreliable_count(raw_per_um2: float, curve: CountCurve, prior_per_um2: float) -> str | None:
    """Why the network's raw count cannot be corrected with ``curve`` (None where it can).

    A count that falls with density beyond a peak is ambiguous: the raw count fits a sparse
    and a dense movie. It is taken as the sparse one only when the setup's density
    (``prior_per_um2``, calibrate's) lies below the peak too and the count is below the peak's.
    A count above what the network ever gave on the curve, where its count has levelled off,
    has no density to go with it.
    """
    peak = count_peak(curve)
    if peak is not None:
        t_peak, c_peak = peak
        if prior_per_um2 > t_peak or raw_per_um2 >= c_peak:
            return (
                f"the network's count falls with the density beyond {t_peak:.2f} µm⁻² (it "
                "misses most emitters of denser frames: trained too little or too sparse yet), "
                f"and the setup's density, {prior_per_um2:.2f} µm⁻², is beyond that"
                if prior_per_um2 > t_peak
                else f"the network's count peaks at {c_peak:.2f} µm⁻² on the simulated windows, "
                f"below its count on the movie ({raw_per_um2:.2f})"
            )
        return None
    order = np.argsort(curve.true_per_um2)
    t, c = curve.true_per_um2[order], np.maximum.accumulate(curve.counted_per_um2[order])
    flat = len(t) > 1 and (c[-1] - c[-2]) <= 0.05 * c[-1] * (t[-1] - t[-2]) / t[-1]
    if raw_per_um2 > c[-1] and flat:
        return (
            f"the network's count on the movie ({raw_per_um2:.2f} µm⁻²) is above what it counts "
            f"on any simulated density (at most {c[-1]:.2f}), where its count has levelled off"
        )
    return None


def corrected_densities(raw_per_um2: FloatArray, curve: CountCurve) -> FloatArray:
    """:func:`correct_count` of each frame's raw count (emitters per µm²)."""
    return np.array([correct_count(float(r), curve) for r in raw_per_um2], dtype=np.float64)


def widened_range(
    density_range: tuple[float, float], densest_per_um2: float, sparsest_per_um2: float
) -> tuple[float, float]:
    """The training range that covers these densities (95th and 5th percentile of the frames).

    The top moves to :data:`RANGE_MARGIN` × ``densest`` when ``densest`` reaches
    :data:`EDGE_FRACTION` of it; a low end above 0 moves down to ``sparsest`` / margin when
    ``sparsest`` falls below it. The range never shrinks: otherwise it is returned unchanged.
    """
    lo, hi = float(density_range[0]), float(density_range[1])
    if densest_per_um2 > EDGE_FRACTION * hi:
        hi = max(hi, round(RANGE_MARGIN * densest_per_um2, 2))
    if lo > 0.0 and sparsest_per_um2 < lo:
        lo = round(sparsest_per_um2 / RANGE_MARGIN, 2)
    return lo, hi


def curve_top(density_range: tuple[float, float], raw_p95_per_um2: float) -> float:
    """The densest point of the count curve: the range's top, or twice the densest frames'
    raw count where that is more (a network that misses half the emitters still lands inside)."""
    return float(max(density_range[1], 2.0 * raw_p95_per_um2, 0.5))


def curve_densities(top_per_um2: float) -> FloatArray:
    """The densities of the count curve, emitters per µm²."""
    return np.round(top_per_um2 * np.asarray(CURVE_FRACTIONS), 3)


def curve_windows(density_per_um2: float, shape_px: tuple[int, int], pixel_size_nm: float) -> int:
    """Windows simulated at one density: about :data:`CURVE_EMITTERS` true emitters."""
    per_window = max(density_per_um2 * area_um2(shape_px, pixel_size_nm), 1e-6)
    lo, hi = CURVE_WINDOWS
    return int(min(hi, max(lo, math.ceil(CURVE_EMITTERS / per_window))))


def curve_shape(frame_shape: tuple[int, int]) -> tuple[int, int]:
    """The simulated windows' size: the movie's frame, at most :data:`CURVE_CROP_PX` a side."""
    return (min(int(frame_shape[0]), CURVE_CROP_PX), min(int(frame_shape[1]), CURVE_CROP_PX))


@torch.no_grad()
def _outputs(net: DecodeNet, photons: Tensor, scaling: Scaling) -> Tensor:
    """Network outputs (B, 10, H, W) of (B, 3, H, W) photon windows, in eval mode."""
    net.eval()
    h, w = photons.shape[-2:]
    x = pad_to_multiple(scaling.scale_input(photons))
    out: Tensor = net(x)
    return out[..., :h, :w]


def count_windows(
    net: DecodeNet,
    adu: Tensor,
    sim: WindowSimulator,
    scaling: Scaling,
    postprocess: PostprocessConfig,
) -> np.ndarray:
    """Localizations of (B, 3, H, W) ADU windows (centre frames; ``frame`` = window index)."""
    parts = []
    px = sim.cfg.camera.pixel_size_nm
    for i in range(0, adu.shape[0], CHUNK_WINDOWS):
        chunk = adu[i : i + CHUNK_WINDOWS].to(sim.device)
        out = _outputs(net, sim.camera.to_photons(chunk), scaling)
        parts.append(localize(out, torch.arange(i, i + chunk.shape[0]), postprocess, scaling, px))
    return np.concatenate(parts)


def count_frames(
    net: DecodeNet,
    frames_adu: npt.NDArray[Any],
    sim: WindowSimulator,
    scaling: Scaling,
    postprocess: PostprocessConfig,
) -> FloatArray:
    """The network's localizations per µm² in each frame of a block (T, H, W) of consecutive
    ADU frames; frame t sees (t−1, t, t+1), the block's edge frames replicated."""
    frames = torch.as_tensor(np.asarray(frames_adu, dtype=np.float32))
    n = frames.shape[0]
    idx = torch.arange(n)
    windows = torch.stack(
        [frames[(idx - 1).clamp(0, n - 1)], frames, frames[(idx + 1).clamp(0, n - 1)]], 1
    )
    locs = count_windows(net, windows, sim, scaling, postprocess)
    area = area_um2((int(frames.shape[1]), int(frames.shape[2])), sim.cfg.camera.pixel_size_nm)
    return np.bincount(locs["frame"].astype(np.int64), minlength=n).astype(np.float64) / area


def count_curve(
    net: DecodeNet,
    cfg: Config,
    scaling: Scaling,
    postprocess: PostprocessConfig,
    densities_per_um2: FloatArray,
    shape_px: tuple[int, int],
    device: torch.device,
    sim: WindowSimulator | None = None,
) -> CountCurve:
    """The network's count, recall and precision on windows simulated at each density.

    The windows are held out from training (their own fixed seed, the trainer's simulation of
    ``cfg`` at ``shape_px``, uniform and structured windows mixed as in training); ``sim`` reuses
    a simulator's PSF (a spline is costly to build).
    """
    simulator = WindowSimulator(
        cfg, shape_px, n_frames=3, device=device, psf=None if sim is None else sim.psf
    )
    gen = torch.Generator(device=device).manual_seed(CURVE_SEED)
    px = cfg.camera.pixel_size_nm
    area = area_um2(shape_px, px)
    # the training's mix of uniform and structured (locally crowded) windows, as the movie may be
    structured = cfg.training.structured if cfg.training.structured.fraction > 0 else None
    true, counted, recall, precision = [], [], [], []
    for d in densities_per_um2:
        n = curve_windows(float(d), shape_px, px)
        held_out = HeldOutSet.simulate(simulator, n, float(d), gen, structured)
        locs = count_windows(net, held_out.batch.adu, simulator, scaling, postprocess)
        m = score(locs, held_out.ground_truth(px), is_3d=scaling.is_3d)
        tp, fp, fn = m["n_tp"], m["n_fp"], m["n_fn"]
        true.append((tp + fn) / (n * area))
        counted.append((tp + fp) / (n * area))
        recall.append(tp / (tp + fn) if tp + fn else math.nan)
        precision.append(tp / (tp + fp) if tp + fp else math.nan)
    return CountCurve(
        *(np.asarray(v, dtype=np.float64) for v in (true, counted, recall, precision))
    )


def estimate_recount_s(
    net: DecodeNet,
    sim: WindowSimulator,
    scaling: Scaling,
    postprocess: PostprocessConfig,
    frame_shape: tuple[int, int],
    frames: int,
    density_range: tuple[float, float],
) -> float:
    """Seconds one recount (the movie's ``frames`` counted, the count curve simulated and
    counted) takes, from a few windows simulated and counted now (the second pass timed)."""
    shape = curve_shape(frame_shape)
    simulator = WindowSimulator(sim.cfg, shape, n_frames=3, device=sim.device, psf=sim.psf)
    gen = torch.Generator(device=sim.device).manual_seed(CURVE_SEED)
    d = torch.full((4,), float(max(density_range[1], 0.5)) / 2, device=sim.device)
    mix = sim.cfg.training.structured
    structured = mix if mix.fraction > 0 else None  # as count_curve simulates them
    sim_s = count_s = 0.0
    for _ in range(2):  # the first pass warms up
        t0 = time.perf_counter()
        batch = simulator.sample(d, gen, structured)
        t1 = time.perf_counter()
        count_windows(net, batch.adu, simulator, scaling, postprocess)
        sim_s, count_s = (t1 - t0) / 4, (time.perf_counter() - t1) / 4
    densities = curve_densities(curve_top(density_range, 0.0))
    windows = sum(curve_windows(float(x), shape, sim.cfg.camera.pixel_size_nm) for x in densities)
    frame_s = count_s * (frame_shape[0] * frame_shape[1]) / (shape[0] * shape[1])
    return windows * (sim_s + count_s) + frames * frame_s
