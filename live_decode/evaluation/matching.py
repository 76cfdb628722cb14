"""Greedy matching of predicted localizations to ground truth, frame by frame.

The rule is DECODE's ``GreedyHungarianMatching`` (which, despite the name, is greedy): within a
frame, among all prediction/ground-truth pairs that pass the lateral and axial limits, repeatedly
take the pair with the smallest 3-D distance and remove its prediction and its ground-truth
emitter. Pairs never cross frames.

Implementation: candidate pairs come from one KD-tree query over (x, y, frame · big) — a frame
offset larger than the lateral limit keeps frames apart without a Python loop over frames. The
greedy picks are then made in rounds: every pair that is the best remaining pair of both its
prediction and its ground-truth emitter is one the sequential greedy would also pick, so a round
accepts all of them at once. Ties in distance are broken by prediction index, then ground-truth
index, which makes the result deterministic and equal to the sequential rule on that order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.spatial import KDTree

IndexArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

POSITION_FIELDS = ("frame", "x_nm", "y_nm", "z_nm")


@dataclass(frozen=True, eq=False)
class MatchResult:
    """Which predictions were matched to which ground-truth emitters.

    Attributes
    ----------
    pred_index, gt_index
        (n_tp,) int64: row ``pred_index[k]`` of the predictions matches row ``gt_index[k]`` of
        the ground truth. Sorted by ``gt_index``.
    n_pred, n_gt
        Number of rows of the predictions and of the ground truth that were compared.
    """

    pred_index: IndexArray
    gt_index: IndexArray
    n_pred: int
    n_gt: int

    @property
    def n_tp(self) -> int:
        """True positives: matched pairs."""
        return int(self.pred_index.size)

    @property
    def n_fp(self) -> int:
        """False positives: predictions without a ground-truth partner."""
        return self.n_pred - self.n_tp

    @property
    def n_fn(self) -> int:
        """False negatives: ground-truth emitters without a prediction."""
        return self.n_gt - self.n_tp

    @property
    def fp_index(self) -> IndexArray:
        """(n_fp,) int64 rows of the predictions that were not matched, ascending."""
        return _complement(self.pred_index, self.n_pred)

    @property
    def fn_index(self) -> IndexArray:
        """(n_fn,) int64 rows of the ground truth that were not matched, ascending."""
        return _complement(self.gt_index, self.n_gt)


def positions_nm(table: npt.NDArray[np.void], name: str = "table") -> tuple[IndexArray, FloatArray]:
    """Frames and positions of a localization or ground-truth table.

    Parameters
    ----------
    table
        Structured array with at least the fields ``frame``, ``x_nm``, ``y_nm``, ``z_nm``
        (e.g. :data:`live_decode.messages.LOC_DTYPE` or the ground-truth dtype).
    name
        What the table is, for the error message.

    Returns
    -------
    frame
        (N,) int64, 0-based.
    xyz_nm
        (N, 3) float64, nm.

    Raises
    ------
    ValueError
        If a field is missing.
    """
    names = table.dtype.names or ()
    missing = [f for f in POSITION_FIELDS if f not in names]
    if missing:
        raise ValueError(
            f"The {name} has no field(s) {missing}; it needs {list(POSITION_FIELDS)} "
            f"(it has {list(names)}). Pass a LOC_DTYPE or ground-truth structured array."
        )
    frame = np.asarray(table["frame"], dtype=np.int64)
    xyz = np.stack([np.asarray(table[f], dtype=np.float64) for f in POSITION_FIELDS[1:]], axis=1)
    return frame, xyz.reshape(-1, 3)


def isolated(table: npt.NDArray[np.void], radius_nm: float) -> npt.NDArray[np.bool_]:
    """(N,) True for the rows with no other row of the same frame within ``radius_nm`` laterally.

    Single-emitter bounds (CRLB) apply to these; closer emitters overlap and are not "alone".
    """
    frame, xyz = positions_nm(table)
    keep = np.ones(len(frame), dtype=bool)
    if len(frame) < 2:
        return keep
    # Rows of different frames are > 4 radii apart along the third key: never pairs.
    keys = np.column_stack([xyz[:, 0], xyz[:, 1], frame.astype(np.float64) * (4 * radius_nm + 1)])
    pairs = KDTree(keys).query_pairs(radius_nm, output_type="ndarray")
    keep[pairs.ravel()] = False
    return keep


def match_localizations(
    pred: npt.NDArray[np.void],
    gt: npt.NDArray[np.void],
    *,
    max_lateral_nm: float = 250.0,
    max_axial_nm: float | None = 500.0,
) -> MatchResult:
    """Match predictions to ground truth greedily, frame by frame, by smallest 3-D distance.

    Parameters
    ----------
    pred
        (N,) predictions, structured array with ``frame``, ``x_nm``, ``y_nm``, ``z_nm``
        (:data:`~live_decode.messages.LOC_DTYPE`). Rows with a non-finite position never match.
    gt
        (M,) ground truth with the same fields.
    max_lateral_nm
        A pair matches only if its lateral distance √(dx² + dy²) ≤ this, nm.
    max_axial_nm
        ... and its axial distance |dz| ≤ this, nm. None: no axial limit.

    Returns
    -------
    MatchResult
        Matched row indices and the counts for TP / FP / FN.
    """
    if max_lateral_nm <= 0:
        raise ValueError(f"max_lateral_nm must be > 0 nm, got {max_lateral_nm}.")
    if max_axial_nm is not None and max_axial_nm < 0:
        raise ValueError(f"max_axial_nm must be >= 0 nm or None, got {max_axial_nm}.")
    frame_p, xyz_p = positions_nm(pred, "predictions")
    frame_g, xyz_g = positions_nm(gt, "ground truth")
    pi, gi, dist = _candidate_pairs(frame_p, xyz_p, frame_g, xyz_g, max_lateral_nm, max_axial_nm)
    pred_index, gt_index = _greedy(pi, gi, dist, len(pred), len(gt))
    order = np.argsort(gt_index, kind="stable")
    return MatchResult(pred_index[order], gt_index[order], len(pred), len(gt))


def matched_errors_nm(
    pred: npt.NDArray[np.void], gt: npt.NDArray[np.void], match: MatchResult
) -> FloatArray:
    """(n_tp, 3) float64 position errors prediction − ground truth (dx, dy, dz), nm."""
    _, xyz_p = positions_nm(pred, "predictions")
    _, xyz_g = positions_nm(gt, "ground truth")
    errors: FloatArray = xyz_p[match.pred_index] - xyz_g[match.gt_index]
    return errors


def _candidate_pairs(
    frame_p: IndexArray,
    xyz_p: FloatArray,
    frame_g: IndexArray,
    xyz_g: FloatArray,
    max_lateral_nm: float,
    max_axial_nm: float | None,
) -> tuple[IndexArray, IndexArray, FloatArray]:
    """All same-frame pairs within the limits: (pred row, gt row, 3-D distance in nm)."""
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    ok_p = np.flatnonzero(np.isfinite(xyz_p).all(axis=1))
    ok_g = np.flatnonzero(np.isfinite(xyz_g).all(axis=1))
    if ok_p.size == 0 or ok_g.size == 0:
        return empty
    # Frames further apart than the search radius can never pair up.
    frame_step_nm = 4.0 * max_lateral_nm + 1.0
    lo = min(int(frame_p.min()), int(frame_g.min()))

    def lateral_keys(frame: IndexArray, xyz: FloatArray, rows: IndexArray) -> FloatArray:
        f = (frame[rows] - lo).astype(np.float64) * frame_step_nm
        return np.column_stack([xyz[rows, 0], xyz[rows, 1], f])

    tree_p = KDTree(lateral_keys(frame_p, xyz_p, ok_p))
    tree_g = KDTree(lateral_keys(frame_g, xyz_g, ok_g))
    # Slightly generous radius; the exact limit is applied below in float64.
    found = tree_p.sparse_distance_matrix(
        tree_g, max_lateral_nm * (1 + 1e-9) + 1e-9, output_type="ndarray"
    )
    pi = ok_p[found["i"].astype(np.int64)]
    gi = ok_g[found["j"].astype(np.int64)]
    d = xyz_p[pi] - xyz_g[gi]
    keep = (frame_p[pi] == frame_g[gi]) & (np.hypot(d[:, 0], d[:, 1]) <= max_lateral_nm)
    if max_axial_nm is not None:
        keep &= np.abs(d[:, 2]) <= max_axial_nm
    pi, gi, d = pi[keep], gi[keep], d[keep]
    return pi, gi, np.sqrt(np.einsum("ij,ij->i", d, d))


def _greedy(
    pi: IndexArray, gi: IndexArray, dist: FloatArray, n_pred: int, n_gt: int
) -> tuple[IndexArray, IndexArray]:
    """Greedy smallest-distance-first matching of candidate pairs, in vectorized rounds."""
    order = np.lexsort((gi, pi, dist))  # rank = position in this order; ties broken by index
    pi, gi = pi[order], gi[order]
    used_p = np.zeros(n_pred, dtype=bool)
    used_g = np.zeros(n_gt, dtype=bool)
    alive = np.arange(pi.size, dtype=np.int64)
    accepted: list[IndexArray] = []
    no_pair = np.iinfo(np.int64).max
    while alive.size:
        p, g = pi[alive], gi[alive]
        best_of_p = np.full(n_pred, no_pair, dtype=np.int64)
        best_of_g = np.full(n_gt, no_pair, dtype=np.int64)
        np.minimum.at(best_of_p, p, alive)
        np.minimum.at(best_of_g, g, alive)
        mutual = alive[(best_of_p[p] == alive) & (best_of_g[g] == alive)]
        accepted.append(mutual)
        used_p[pi[mutual]] = True
        used_g[gi[mutual]] = True
        alive = alive[~used_p[p] & ~used_g[g]]
    ranks = np.concatenate(accepted) if accepted else np.empty(0, np.int64)
    return pi[ranks], gi[ranks]


def _complement(index: IndexArray, n: int) -> IndexArray:
    mask = np.ones(n, dtype=bool)
    mask[index] = False
    return np.flatnonzero(mask).astype(np.int64)
