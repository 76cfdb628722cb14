"""The shared forward model: camera noise moments and likelihood, fittable PSF, renderers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from live_decode.config import (
    AstigmaticPsfConfig,
    CameraConfig,
    GaussianPsfConfig,
    SplinePsfConfig,
)
from live_decode.errors import LiveDecodeError
from live_decode.quality.mismatch import ResidualModel, expected_adu
from live_decode.simulation.camera import Camera
from live_decode.simulation.forward import (
    BackgroundGrid,
    CameraNoise,
    FittablePSF,
    PixelLikelihood,
    WindowRenderer,
    emitters_from_locs,
)
from live_decode.simulation.psf import GaussianPSF, build_psf, render

CAMERAS = {
    "emccd": CameraConfig(),
    "scmos": CameraConfig(
        kind="scmos", e_per_adu=0.46, em_gain=1.0, qe=0.8, read_noise_e=1.6, baseline_adu=100.0
    ),
}


@pytest.mark.parametrize("kind", sorted(CAMERAS))
@pytest.mark.parametrize("photons", [5.0, 60.0, 800.0])
def test_noise_moments_match_the_simulated_camera(kind: str, photons: float) -> None:
    camera = CAMERAS[kind]
    gen = torch.Generator().manual_seed(1)
    adu = Camera(camera).forward(torch.full((200_000,), photons, dtype=torch.float64), gen)
    mean, var = CameraNoise(camera).adu_mean_var(torch.tensor(photons, dtype=torch.float64))
    assert float(adu.mean()) == pytest.approx(float(mean), rel=0.01)
    assert float(adu.var()) == pytest.approx(float(var), rel=0.05)


@pytest.mark.parametrize("kind", sorted(CAMERAS))
def test_likelihood_peaks_at_the_true_intensity(kind: str) -> None:
    """The quasi-Poisson score is unbiased: the best scale of the true μ is 1 (to 1 %)."""
    camera = CAMERAS[kind]
    gen = torch.Generator().manual_seed(2)
    truth = 20.0 + 400.0 * torch.rand(50_000, generator=gen, dtype=torch.float64)
    adu = Camera(camera).forward(truth, gen)
    noise = CameraNoise(camera)
    scales = torch.linspace(0.95, 1.05, 101, dtype=torch.float64)
    ll = torch.stack([noise.log_likelihood(adu, truth * s).sum() for s in scales])
    assert float(scales[int(ll.argmax())]) == pytest.approx(1.0, abs=0.01)
    fixed = PixelLikelihood(noise, adu)
    assert float(fixed(truth)) == pytest.approx(float(noise.log_likelihood(adu, truth).mean()))


def test_mismatch_uses_the_shared_noise_model() -> None:
    camera = CAMERAS["emccd"]
    photons = np.array([0.0, 3.0, 50.0, 1e3])
    mean, var = expected_adu(photons, camera)
    m2, v2 = CameraNoise(camera).adu_mean_var(torch.from_numpy(photons))
    np.testing.assert_allclose(mean, m2.numpy())
    np.testing.assert_allclose(var, v2.numpy())
    model = ResidualModel(build_psf(GaussianPsfConfig(), camera.pixel_size_nm), camera)
    assert isinstance(model.noise, CameraNoise)


def test_window_renderer_equals_render() -> None:
    gen = torch.Generator().manual_seed(3)
    n = 40
    x = 64 * torch.rand(n, generator=gen, dtype=torch.float64)
    y = 64 * torch.rand(n, generator=gen, dtype=torch.float64)
    ph = 1000 * torch.rand(n, generator=gen, dtype=torch.float64)
    image = torch.randint(0, 3, (n,), generator=gen)
    psf = GaussianPSF(1.4, 15, 1.1)
    em = emitters_from_locs(image, x * 100, y * 100, torch.zeros(n), ph, 100.0, torch.float64)
    ref = render(psf, em, 3, (64, 64))
    out = WindowRenderer(x, y, image, 3, (64, 64), 15)(psf, x, y, torch.zeros(n), ph)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-5)


def test_background_grid_reproduces_a_smooth_field() -> None:
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    field = (50.0 + 10.0 * torch.sin(xx / 30.0) + 5.0 * yy / 64.0)[None]
    grid = BackgroundGrid(field, 4, (64, 64))
    opt = torch.optim.Adam([grid.log_level], lr=0.05)
    for _ in range(200):
        opt.zero_grad()
        loss = ((grid.field() - field) ** 2).mean()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    assert float((grid.field().detach() - field).abs().max()) < 1.0


@pytest.mark.parametrize(
    ("cfg", "shape", "expect"),
    [
        (GaussianPsfConfig(sigma_nm=130), None, GaussianPsfConfig(sigma_nm=130)),
        (
            GaussianPsfConfig(sigma_nm=130),
            "elliptical",
            GaussianPsfConfig(sigma_nm=130, sigma_y_nm=130),
        ),
        (
            GaussianPsfConfig(sigma_nm=140, sigma_y_nm=120),
            None,
            GaussianPsfConfig(sigma_nm=140, sigma_y_nm=120),
        ),
        (AstigmaticPsfConfig(), None, AstigmaticPsfConfig()),
    ],
)
def test_fittable_psf_round_trips_its_config(
    cfg: GaussianPsfConfig | AstigmaticPsfConfig, shape: str | None, expect: object
) -> None:
    psf = FittablePSF.from_config(cfg, 100.0, shape)  # type: ignore[arg-type]
    assert psf.to_config(cfg, 100.0) == expect
    ref = build_psf(cfg, 100.0)
    z = torch.tensor([-300.0, 0.0, 200.0])
    for a, b in zip(psf.sigmas(z.double()), ref.sigmas(z), strict=True):  # type: ignore[attr-defined]
        np.testing.assert_allclose(a.detach().numpy(), b.numpy(), rtol=1e-6)
    v = psf.values_nm(100.0)
    assert v["sigma_nm"] == pytest.approx(math.sqrt(v["sigma_x_nm"] * v["sigma_y_nm"]))


def test_fittable_psf_refuses_what_it_cannot_fit(tmp_path: object) -> None:
    with pytest.raises(LiveDecodeError, match="spline"):
        FittablePSF.from_config(SplinePsfConfig(calibration="x.mat"), 100.0)  # type: ignore[arg-type]
    with pytest.raises(LiveDecodeError, match="elliptical"):
        FittablePSF.from_config(GaussianPsfConfig(), 100.0, "astigmatic")


def test_elliptical_gaussian_config_renders_elliptical() -> None:
    psf = build_psf(GaussianPsfConfig(sigma_nm=150, sigma_y_nm=100), 100.0)
    sx, sy = psf.sigmas(torch.zeros(1))  # type: ignore[attr-defined]
    assert (float(sx), float(sy)) == pytest.approx((1.5, 1.0))
