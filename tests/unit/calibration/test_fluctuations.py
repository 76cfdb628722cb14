"""The pixels' signal fluctuations: r1 tells the on-time whatever the density, κ2³/κ3² grows with
the density whatever the overlap (the spot detector sees 40 % of the emitters at 3 µm⁻²)."""

from __future__ import annotations

import pytest

from live_decode.calibration.fluctuations import signal_cumulants
from live_decode.calibration.setup import _true_camera
from live_decode.testing.calibration import simulate


@pytest.mark.parametrize("kind", ["emccd", "scmos"])
def test_r1_is_the_on_time_and_the_cumulants_count_the_emitters(kind: str) -> None:
    stats = {}
    for laser_mw in (6.0, 24.0):  # ~1 and ~3 emitters/µm²/frame, on-time 3 frames
        cfg, movie, density = simulate(kind, frames=300, laser_mw=laser_mw)
        stats[laser_mw] = (density, signal_cumulants(movie, _true_camera(cfg)))
    (d1, sparse), (d3, dense) = stats[6.0], stats[24.0]
    assert d3 / d1 > 3.0
    assert dense.r1 == pytest.approx(sparse.r1, abs=0.02)
    assert 0.7 < sparse.r1 < 0.85  # a 3-frame on-time (1.5 frames gives ~0.65, 4.5 ~0.81)
    ratio = dense.density_statistic / sparse.density_statistic
    assert ratio == pytest.approx(d3 / d1, rel=0.10)
