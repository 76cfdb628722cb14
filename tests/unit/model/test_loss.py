from __future__ import annotations

import math

import torch

from live_decode.model.loss import Targets, gmm_loss, pixel_means


def _out(h: int, w: int, p: float = 0.01) -> torch.Tensor:
    out = torch.zeros(1, 10, h, w)
    out[:, 0] = p
    out[:, 1] = 0.5
    out[:, 5:9] = 0.2
    out[:, 9] = 0.3
    return out


def _targets(params: list[list[float]], h: int, w: int, bg: float = 0.3) -> Targets:
    m = max(1, len(params))
    t = torch.zeros(1, m, 4)
    mask = torch.zeros(1, m, dtype=torch.bool)
    for i, row in enumerate(params):
        t[0, i] = torch.tensor(row)
        mask[0, i] = True
    return Targets(t, mask, torch.full((1, h, w), bg))


def test_pixel_means_are_absolute_column_row_coordinates() -> None:
    out = _out(4, 5)
    out[0, 2, 1, 3] = 0.25  # dx at row 1, col 3
    out[0, 3, 1, 3] = -0.5  # dy
    mu = pixel_means(out)
    assert math.isclose(float(mu[0, 1, 1, 3]), 3.75)  # x = col + 0.5 + dx
    assert math.isclose(float(mu[0, 2, 1, 3]), 1.0)  # y = row + 0.5 + dy


def test_hand_computed_single_pixel_case() -> None:
    # One pixel (H = W = 1) with p, one target exactly at the component's mean.
    p, s = 0.8, 0.2
    out = _out(1, 1, p)
    tgt = _targets([[0.5, 0.5, 0.5, 0.0]], 1, 1)
    loss = float(gmm_loss(out, tgt, n_dims=3))
    var = p * (1 - p)
    count = -0.5 * ((1 - p) ** 2 / var + math.log(var) + math.log(2 * math.pi)) * 1
    log_comp = 3 * (-math.log(s) - 0.5 * math.log(2 * math.pi))  # weight p/Σp = 1
    assert math.isclose(loss, -(count + log_comp), rel_tol=1e-5)


def test_no_emitters_gives_no_count_or_mixture_term() -> None:
    out = _out(8, 8)
    tgt = _targets([], 8, 8)
    # Only the background term remains and it is 0 when bg matches.
    assert float(gmm_loss(out, tgt)) == 0.0


def test_correct_prediction_scores_better_than_shifted() -> None:
    h = w = 8
    good, bad = _out(h, w), _out(h, w)
    good[0, 0, 3, 4] = 0.95
    bad[0, 0, 3, 6] = 0.95
    tgt = _targets([[0.5, 4.5, 3.5, 0.0]], h, w)
    assert float(gmm_loss(good, tgt)) < float(gmm_loss(bad, tgt))


def test_masked_slots_do_not_count_and_gradients_flow() -> None:
    out = _out(8, 8).requires_grad_(True)
    t1 = _targets([[0.5, 4.5, 3.5, 0.0]], 8, 8)
    padded = Targets(
        torch.cat([t1.params, torch.full((1, 2, 4), 99.0)], 1),
        torch.cat([t1.mask, torch.zeros(1, 2, dtype=torch.bool)], 1),
        t1.background,
    )
    a, b = gmm_loss(out, t1), gmm_loss(out, padded)
    torch.testing.assert_close(a, b)
    b.sum().backward()
    assert out.grad is not None and torch.isfinite(out.grad).all()


def test_batched_equals_per_sample() -> None:
    torch.manual_seed(1)
    outs = torch.rand(3, 10, 6, 6) * 0.9 + 0.05
    params = torch.rand(3, 2, 4) * 6
    mask = torch.tensor([[True, True], [True, False], [False, False]])
    bg = torch.rand(3, 6, 6)
    batched = gmm_loss(outs, Targets(params, mask, bg))
    for i in range(3):
        single = gmm_loss(
            outs[i : i + 1], Targets(params[i : i + 1], mask[i : i + 1], bg[i : i + 1])
        )
        torch.testing.assert_close(batched[i : i + 1], single)
