"""Image scores: NMSE (Deep-STORM's measure, optimally scaled) and point renders."""

from __future__ import annotations

import math

import numpy as np
import pytest

from live_decode.evaluation.images import image_nmse, nmse, render_points


def test_nmse_of_known_images() -> None:
    ref = np.array([[0.0, 1.0], [2.0, 0.0]])
    assert nmse(ref, ref) == 0.0
    assert nmse(3.5 * ref, ref) == pytest.approx(0.0)  # units do not matter: best scale first
    # Orthogonal images share nothing: the best scale is 0 and the error is all of ‖ref‖².
    assert nmse(np.array([[1.0, 0.0], [0.0, 1.0]]), ref) == pytest.approx(1.0)
    assert nmse(np.zeros((2, 2)), ref) == 1.0
    # With the best scale, NMSE = 1 − ⟨x̂, x⟩² / (‖x̂‖² ‖x‖²): here 1 − 5² / (6 · 5) = 1/6.
    est = ref + np.array([[1.0, 0.0], [0.0, 0.0]])
    assert nmse(est, ref) == pytest.approx(1.0 / 6.0)
    assert nmse(np.array([1.0, 1.0]), np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert math.isnan(nmse(ref, np.zeros((2, 2))))
    with pytest.raises(ValueError, match="shapes"):
        nmse(np.zeros(3), np.zeros(4))


def test_blurred_nmse_forgives_a_shift_within_the_blur() -> None:
    ref = np.zeros((32, 32))
    ref[16, 16] = 1.0
    shifted = np.zeros((32, 32))
    shifted[16, 17] = 1.0
    assert nmse(shifted, ref) == 1.0
    assert image_nmse(shifted, ref, blur_sigma_px=1.0) == pytest.approx(
        1.0 - math.exp(-1.0 / 4.0) ** 2, rel=0.05
    )  # two unit Gaussians 1 σ apart: overlap exp(−d²/4σ²)
    assert image_nmse(shifted, ref, blur_sigma_px=4.0) < 0.05


def test_render_counts_points_in_their_pixels() -> None:
    img = render_points([5.0, 5.0, 24.9, 99.0, -1.0], [5.0, 5.0, 0.0, 0.0, 0.0], (2, 3), 10.0)
    assert img.tolist() == [[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    weighted = render_points([5.0], [15.0], (2, 3), 10.0, weights=[0.5])
    assert weighted[1, 0] == 0.5
