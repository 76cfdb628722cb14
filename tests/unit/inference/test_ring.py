from __future__ import annotations

import torch

from live_decode.inference.ring import FeatureRing, Window


def _f(i: int) -> torch.Tensor:
    return torch.full((1, 2, 2), float(i))


def _ids(ws: list[Window]) -> list[tuple[int, int, int, int]]:
    return [(w.index, int(w.prev[0, 0, 0]), int(w.cur[0, 0, 0]), int(w.next[0, 0, 0])) for w in ws]


def test_emits_t_when_t_plus_1_arrives_and_replicates_edges() -> None:
    ring = FeatureRing()
    out = []
    for i in range(4):
        out += ring.push(i, 0, _f(i))
    assert _ids(out) == [(0, 0, 0, 1), (1, 0, 1, 2), (2, 1, 2, 3)]
    assert ring.pending == 3
    assert _ids(ring.break_context()) == [(3, 2, 3, 3)]
    assert ring.pending is None


def test_gap_closes_context_on_both_sides() -> None:
    ring = FeatureRing()
    out = ring.push(0, 0, _f(0)) + ring.push(1, 0, _f(1))
    out += ring.break_context()  # frames 2, 3 dropped
    out += ring.push(4, 0, _f(4)) + ring.push(5, 0, _f(5)) + ring.break_context()
    assert _ids(out) == [(0, 0, 0, 1), (1, 0, 1, 1), (4, 4, 4, 5), (5, 4, 5, 5)]


def test_non_consecutive_index_is_treated_as_a_gap() -> None:
    ring = FeatureRing()
    out = ring.push(0, 0, _f(0)) + ring.push(2, 0, _f(2)) + ring.break_context()
    assert _ids(out) == [(0, 0, 0, 0), (2, 2, 2, 2)]
