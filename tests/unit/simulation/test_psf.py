"""Contract and physics tests for every PSF implementation, and for render().

Coordinates (DESIGN.md §4): x is the column, y the row, in px; pixel j covers [j, j+1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from live_decode.config import AstigmaticPsfConfig, GaussianPsfConfig
from live_decode.simulation.emitters import Emitters
from live_decode.simulation.psf import PSF, AstigmaticPSF, GaussianPSF, build_psf, render
from live_decode.simulation.spline_psf import SplinePSF

PIXEL_NM = 100.0
ROI = 41  # large enough to hold the whole PSF over the z range below
ASTIG = AstigmaticPsfConfig(sigma0_nm=110.0, focal_offset_nm=250.0, depth_of_field_nm=400.0)


def _spline_from_astigmatic() -> PSF:
    """Spline through a z-stack of the astigmatic Gaussian (41 × 41 px, z ±800 nm every 40 nm)."""
    astig = AstigmaticPSF(1.1, 250.0, 400.0, ROI)
    z = torch.arange(-20, 21, dtype=torch.float64) * 40.0
    centre = torch.full_like(z, ROI / 2)  # centre of the middle pixel
    stack = astig.roi(torch.stack([centre, centre, z], dim=1))[0].numpy()
    return SplinePSF.from_zstack(stack, z_step_nm=40.0, roi_px=ROI)


_BUILDERS: dict[str, Callable[[], PSF]] = {
    "gaussian": lambda: build_psf(GaussianPsfConfig(sigma_nm=130.0, roi_px=ROI), PIXEL_NM),
    "astigmatic": lambda: build_psf(ASTIG.model_copy(update={"roi_px": ROI}), PIXEL_NM),
    "spline": _spline_from_astigmatic,
}


@pytest.fixture(scope="module", params=sorted(_BUILDERS))
def psf(request: pytest.FixtureRequest) -> PSF:
    return _BUILDERS[request.param]()


def _xyz(*rows: tuple[float, float, float]) -> Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _centroid(values: Tensor, row0: Tensor, col0: Tensor) -> tuple[Tensor, Tensor]:
    """Intensity-weighted mean of the pixel centres, (N,) x and (N,) y in px."""
    k = values.shape[-1]
    centres = torch.arange(k, dtype=values.dtype) + 0.5
    total = values.sum(dim=(1, 2))
    x = (values.sum(dim=1) * (col0[:, None] + centres)).sum(dim=1) / total
    y = (values.sum(dim=2) * (row0[:, None] + centres)).sum(dim=1) / total
    return x, y


class TestPSFContract:
    """Every PSF: window shape and origin, unit sum, sub-pixel centroid, gradients, empty input."""

    def test_window_shape_and_origin(self, psf: PSF) -> None:
        xyz = _xyz((30.2, 12.9, 0.0), (3.99, 4.0, 100.0))
        values, row0, col0 = psf.roi(xyz)
        assert values.shape == (2, psf.roi_px, psf.roi_px)
        assert row0.dtype == col0.dtype == torch.int64
        # The window is centred on the pixel holding the emitter.
        assert col0.tolist() == [30 - ROI // 2, 3 - ROI // 2]
        assert row0.tolist() == [12 - ROI // 2, 4 - ROI // 2]

    @pytest.mark.parametrize(
        "xyz", [(20.5, 20.5, 0.0), (20.13, 20.77, 0.0), (7.91, 33.02, -370.0), (50.0, 50.0, 430.0)]
    )
    def test_sums_to_one(self, psf: PSF, xyz: tuple[float, float, float]) -> None:
        values = psf.roi(_xyz(xyz))[0]
        assert values.sum().item() == pytest.approx(1.0, abs=1e-3)
        assert values.min().item() >= -1e-4  # a spline may ring slightly below 0, no more

    @pytest.mark.parametrize("dx, dy", [(0.0, 0.0), (0.13, -0.27), (0.49, 0.5), (-0.5, 0.77)])
    @pytest.mark.parametrize("z", [0.0, -300.0])
    def test_centroid_follows_subpixel_shift(
        self, psf: PSF, dx: float, dy: float, z: float
    ) -> None:
        x, y = 20.5 + dx, 20.5 + dy
        cx, cy = _centroid(*psf.roi(_xyz((x, y, z))))
        assert cx.item() == pytest.approx(x, abs=0.01)
        assert cy.item() == pytest.approx(y, abs=0.01)

    def test_values_are_differentiable(self, psf: PSF) -> None:
        xyz = _xyz((20.3, 20.6, -150.0)).requires_grad_(True)
        values = psf.roi(xyz)[0]
        # Light right of the emitter grows when the emitter moves right.
        right = values[0, :, ROI // 2 + 2 :].sum()
        (grad,) = torch.autograd.grad(right, xyz)
        assert torch.isfinite(grad).all()
        assert grad[0, 0].item() > 0.05

    def test_no_emitters(self, psf: PSF) -> None:
        values, row0, col0 = psf.roi(torch.zeros(0, 3, dtype=torch.float64))
        assert values.shape == (0, psf.roi_px, psf.roi_px)
        assert row0.shape == col0.shape == (0,)

    @pytest.mark.gpu
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda_matches_cpu(self, psf: PSF) -> None:
        xyz = _xyz((20.3, 20.6, -150.0), (11.7, 5.2, 320.0)).float()
        cpu = psf.roi(xyz)[0]
        gpu = psf.roi(xyz.cuda())[0].cpu()
        torch.testing.assert_close(gpu, cpu, atol=1e-6, rtol=1e-4)


# ---------------------------------------------------------------------- astigmatism
def _second_moment_sigmas(values: Tensor, x: float, y: float) -> tuple[float, float]:
    """σx, σy (px) of a window at origin 0, less the 1/12 px² that pixel binning adds."""
    k = values.shape[-1]
    centres = torch.arange(k, dtype=values.dtype) + 0.5
    var_x = (values.sum(dim=0) * (centres - x) ** 2).sum() / values.sum()
    var_y = (values.sum(dim=1) * (centres - y) ** 2).sum() / values.sum()
    return math.sqrt(var_x.item() - 1 / 12), math.sqrt(var_y.item() - 1 / 12)


@pytest.mark.parametrize("z_nm", [-600.0, -250.0, -100.0, 0.0, 100.0, 250.0, 600.0])
def test_astigmatic_sigmas_follow_config(z_nm: float) -> None:
    """σx(z) = σ0 √(1 + ((z + c)/d)²), σy(z) = σ0 √(1 + ((z − c)/d)²), measured to 1 %."""
    psf = build_psf(ASTIG.model_copy(update={"roi_px": ROI}), PIXEL_NM)
    x = y = ROI / 2
    values = psf.roi(_xyz((x, y, z_nm)))[0][0]
    sx, sy = _second_moment_sigmas(values, x, y)
    s0, c, d = ASTIG.sigma0_nm / PIXEL_NM, ASTIG.focal_offset_nm, ASTIG.depth_of_field_nm
    assert sx == pytest.approx(s0 * math.sqrt(1 + ((z_nm + c) / d) ** 2), rel=0.01)
    assert sy == pytest.approx(s0 * math.sqrt(1 + ((z_nm - c) / d) ** 2), rel=0.01)


def test_astigmatic_foci() -> None:
    """x is sharpest at z = −c and y at z = +c; the two swap under z → −z."""
    psf = AstigmaticPSF(1.1, 250.0, 400.0, ROI)
    z = torch.linspace(-800.0, 800.0, 161, dtype=torch.float64)
    sx, sy = psf.sigmas(z)
    assert z[sx.argmin()].item() == pytest.approx(-250.0)
    assert z[sy.argmin()].item() == pytest.approx(250.0)
    torch.testing.assert_close(sx, sy.flip(0))


# ---------------------------------------------------------------------- render
def _emitters(
    xyz: list[tuple[float, float, float]], photons: list[float], frame: list[int]
) -> Emitters:
    n = len(photons)
    return Emitters(
        torch.tensor(xyz, dtype=torch.float32),
        torch.tensor(photons, dtype=torch.float32),
        torch.tensor(frame, dtype=torch.int64),
        torch.arange(n),
    )


@pytest.mark.parametrize(
    "x, y, frame, row, col",
    [
        (5.5, 9.5, 0, 9, 5),  # x is the column, y the row
        (20.2, 3.7, 1, 3, 20),
        (0.4, 14.9, 2, 14, 0),
    ],
)
def test_render_places_light_at_x_column_y_row(
    x: float, y: float, frame: int, row: int, col: int
) -> None:
    psf = GaussianPSF(0.8, 15)
    images = render(psf, _emitters([(x, y, 0.0)], [1000.0], [frame]), 3, (16, 24))
    assert images.shape == (3, 16, 24)
    brightest = int(images[frame].argmax())
    assert divmod(brightest, 24) == (row, col)
    others = [f for f in range(3) if f != frame]
    assert images[others].abs().max().item() == 0.0


def test_render_keeps_photons_and_drops_light_off_the_chip() -> None:
    psf = GaussianPSF(1.0, 15)
    emitters = _emitters(
        [(12.0, 8.0, 0.0), (12.3, 7.6, 0.0), (0.0, 0.0, 0.0)], [500, 700, 400], [0, 0, 1]
    )
    images = render(psf, emitters, 2, (16, 24))
    assert images[0].sum().item() == pytest.approx(1200.0, rel=1e-4)
    # An emitter on the corner keeps about a quarter of its light.
    assert images[1].sum().item() == pytest.approx(100.0, rel=0.02)


def test_render_without_emitters() -> None:
    images = render(GaussianPSF(1.0, 15), Emitters.empty(), 2, (8, 9))
    assert images.shape == (2, 8, 9)
    assert images.abs().sum().item() == 0.0
